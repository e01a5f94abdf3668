"""Inbound e-mail at the edge.

decode_bodies: the text/plain and text/html bodies of an inbound RFC 5322 message.
parse_inbound_email: one raw message as our InboundMessage (addresses, ids, auto-reply, bounce).
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import quopri
from pathlib import Path

import pytest

from gateway.channels.base import Bounce, ChannelKind, InboundMessage
from gateway.channels.email_parse import decode_bodies, parse_inbound_email

HEAD = b"From: Parent <parent@example.com>\r\nTo: office@school.example\r\nSubject: Re: Trip\r\n"


def message(content_type: str, payload: bytes, cte: str = "8bit", extra: str = "") -> bytes:
    """A single-part message with the given body bytes, as a client would send it."""
    return HEAD + (f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
                   f"Content-Transfer-Encoding: {cte}\r\n{extra}\r\n").encode() + payload


class TestTransferEncodings:
    def test_quoted_printable(self) -> None:
        payload = quopri.encodestring("Ça va très bien, merci.\n".encode("utf-8"))
        assert decode_bodies(message('text/plain; charset="utf-8"', payload, "quoted-printable")) \
            == ("Ça va très bien, merci.\n", None)

    def test_quoted_printable_soft_line_break(self) -> None:
        payload = b"On Mon, Jun 3, 2024 at 12:53=E2=80=AFAM Cody <c@example.com> w=\r\nrote:\r\n"
        text, _ = decode_bodies(message("text/plain; charset=utf-8", payload, "quoted-printable"))
        assert text == "On Mon, Jun 3, 2024 at 12:53\u202fAM Cody <c@example.com> wrote:\n"

    def test_base64(self) -> None:
        payload = base64.encodebytes("Привет, всё хорошо.\n".encode("utf-8"))
        assert decode_bodies(message("text/plain; charset=utf-8", payload, "base64")) \
            == ("Привет, всё хорошо.\n", None)

    def test_broken_base64_does_not_raise(self) -> None:
        text, html = decode_bodies(message("text/plain; charset=utf-8", b"SGVsbG8gd29ybGQ!!!*", "base64"))
        assert text is not None and text.startswith("Hello") and html is None

    def test_unknown_transfer_encoding_keeps_the_text(self) -> None:
        assert decode_bodies(message("text/plain; charset=utf-8", b"hi there\r\n", "x-weird")) \
            == ("hi there\n", None)


class TestCharsets:
    def test_utf8(self) -> None:
        assert decode_bodies(message("text/plain; charset=utf-8", "Żółw 🐢\r\n".encode())) \
            == ("Żółw 🐢\n", None)

    def test_latin1(self) -> None:
        assert decode_bodies(message("text/plain; charset=iso-8859-1", "Café crème\n".encode("latin-1"))) \
            == ("Café crème\n", None)

    def test_latin1_label_is_read_as_windows_1252(self) -> None:
        # WHATWG: bytes 0x80-0x9F in "iso-8859-1" mail are windows-1252 punctuation
        assert decode_bodies(message("text/plain; charset=iso-8859-1", b"\x93Yes\x94 \x80 5\n")) \
            == ("\u201cYes\u201d \u20ac 5\n", None)

    def test_windows_1252_quoted_printable(self) -> None:
        assert decode_bodies(message("text/plain; charset=windows-1252", b"It=92s fine=85\n",
                                     "quoted-printable")) == ("It\u2019s fine\u2026\n", None)

    def test_iso_2022_jp(self) -> None:
        payload = "承知しました。\n".encode("iso2022_jp")
        assert decode_bodies(message("text/plain; charset=ISO-2022-JP", payload, "7bit")) \
            == ("承知しました。\n", None)

    def test_utf8_mislabelled_as_ascii(self) -> None:
        assert decode_bodies(message("text/plain; charset=us-ascii", "naïve\n".encode())) \
            == ("naïve\n", None)

    @pytest.mark.parametrize("label", ["x-bogus-123", "utf-42", "base64", "rot13", '"; =;'])
    def test_bogus_charset_name_falls_back(self, label: str) -> None:
        # unknown labels (and Python codecs that are not text encodings) -> UTF-8, then cp1252
        assert decode_bodies(message(f'text/plain; charset="{label}"', "Café\n".encode()))[0] == "Café\n"
        assert decode_bodies(message(f'text/plain; charset="{label}"', "Café\n".encode("cp1252")))[0] \
            == "Café\n"

    def test_wrong_declared_charset_replaces_rather_than_raises(self) -> None:
        text, _ = decode_bodies(message("text/plain; charset=shift_jis", b"\x82\xa0 ok \xff\xfe\n"))
        assert text is not None and "ok" in text


class TestPartSelection:
    def test_multipart_alternative(self) -> None:
        raw = HEAD + (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
            b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n"
            b"--b1--\r\n")
        assert decode_bodies(raw) == ("Hello", "<p>Hello</p>")  # the CRLF before a boundary is the boundary's

    def test_html_only(self) -> None:
        assert decode_bodies(message("text/html; charset=utf-8", b"<div>Hello</div>")) \
            == (None, "<div>Hello</div>")

    def test_attachment_is_not_the_body(self) -> None:
        raw = HEAD + (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
            b"--m\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b'Content-Disposition: attachment; filename="notes.txt"\r\n\r\nNOT THE BODY\r\n'
            b'--m\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n'
            b"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe body\r\n"
            b"--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>The body</p>\r\n"
            b"--a--\r\n"
            b"--m\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename=x.html\r\n\r\n"
            b"<p>NOT THE BODY</p>\r\n"
            b"--m--\r\n")
        assert decode_bodies(raw) == ("The body", "<p>The body</p>")

    def test_an_attachment_only_message_has_no_body(self) -> None:
        raw = HEAD + (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
            b"--m\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n"
            b"attached\r\n--m\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"JVBERi0=\r\n--m--\r\n")
        assert decode_bodies(raw) == (None, None)

    def test_an_attached_message_is_not_descended_into(self) -> None:
        raw = HEAD + (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
            b"--m\r\nContent-Type: text/plain\r\n\r\nSee the attached mail.\r\n"
            b"--m\r\nContent-Type: message/rfc822\r\n\r\n"
            b"Subject: old\r\nContent-Type: text/html\r\n\r\n<p>someone else's words</p>\r\n"
            b"--m--\r\n")
        assert decode_bodies(raw) == ("See the attached mail.", None)

    def test_empty_plain_alternative_defers_to_html(self) -> None:
        raw = HEAD + (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\n \r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--b--\r\n")
        assert decode_bodies(raw) == (None, "<p>Hi</p>")

    def test_no_content_type_means_plain_text(self) -> None:
        assert decode_bodies(HEAD + b"\r\nJust text.\r\n") == ("Just text.\n", None)


class TestBrokenMime:
    def test_multipart_without_boundary_keeps_the_words(self) -> None:
        raw = HEAD + b"Content-Type: multipart/mixed\r\n\r\nHello there\r\n"
        assert decode_bodies(raw) == ("Hello there\n", None)

    def test_boundary_that_never_appears(self) -> None:
        raw = HEAD + b'Content-Type: multipart/alternative; boundary="zzz"\r\n\r\nHello there\r\n'
        assert decode_bodies(raw) == ("Hello there\n", None)

    def test_truncated_multipart(self) -> None:
        raw = HEAD + (b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
                      b"--b\r\nContent-Type: text/plain\r\n\r\nHello, cut off mid-")
        text, html = decode_bodies(raw)
        assert text is not None and text.startswith("Hello") and html is None

    @pytest.mark.parametrize("raw", [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"Content-Type: text/plain; charset*=utf-8''%ZZ; =;;\r\nSubject: =?utf-8?b?????=\r\n\r\nbody\r\n",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        b"Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nduplicate headers\r\n",
        b": no name\r\n\r\nbody",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 200,
    ], ids=["empty", "garbage", "bad-params", "empty-boundary", "duplicate-ctype", "no-field-name", "deep"])
    def test_never_raises(self, raw: bytes) -> None:
        text, html = decode_bodies(raw)
        assert text is None or isinstance(text, str)
        assert html is None or isinstance(html, str)

    def test_line_endings_are_normalised(self) -> None:
        assert decode_bodies(message("text/plain; charset=utf-8", b"a\r\nb\rc\n"))[0] == "a\nb\nc\n"
