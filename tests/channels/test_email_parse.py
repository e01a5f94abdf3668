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


# ==================================================================================================
# parse_inbound_email
# ==================================================================================================

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"
TOKEN = "k7qmz3xw2vd5rjn4tb6hyc2lpe"
TOKEN2 = "m3nf7tq2xkzr5wd6pbh4jcv2ya"
REPLY = f"reply+{TOKEN}@reply.lincoln-elementary.org"
REPLY2 = f"reply+{TOKEN2}@reply.lincoln-elementary.org"
OUR_ID = "<d1042.5f2c9e7a1b3d4c6e@lincoln-elementary.org>"
TOKEN_REF = f"<t.{TOKEN}@reply.lincoln-elementary.org>"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(raw: bytes, **kwargs: object) -> InboundMessage:
    return parse_inbound_email(raw, **kwargs)  # type: ignore[arg-type]


def mail(*headers: str, body: str = "Hello\n", content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A message from header lines; From/To/Message-ID are added unless given."""
    names = {h.split(":", 1)[0].lower() for h in headers}
    lines = list(headers)
    if "from" not in names:
        lines.append("From: Parent <parent@example.com>")
    if "to" not in names:
        lines.append(f"To: {REPLY}")
    if "message-id" not in names:
        lines.append("Message-ID: <m1@example.com>")
    if "content-type" not in names:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def without(raw: bytes, *names: str) -> bytes:
    """The message with the named header lines removed (single-line headers only)."""
    keep = [line for line in raw.split(b"\n")
            if not any(line.lower().startswith(n.lower().encode() + b":") for n in names)]
    return b"\n".join(keep)


class TestRepliesFromRealClients:
    def test_gmail_reply(self) -> None:
        msg = parse(fixture("gmail_reply.eml"), received_via="imap")
        assert msg.channel is ChannelKind.EMAIL
        assert msg.provider_id == "<CAJx8fT2mQ1v3xN0p7yW9kZr5LbT4eH6dGsA1uV8cXoYq2Rw3Ng@mail.gmail.com>"
        assert (msg.sender, msg.sender_name) == ("dana.whitfield@gmail.com", "Dana Whitfield")
        assert msg.recipients == (REPLY,)     # Delivered-To and To name the same address: once
        assert msg.subject == "Re: Science museum trip on Friday"
        # In-Reply-To first, then References in order, each id once
        assert msg.references == (OUR_ID, TOKEN_REF)
        assert msg.text is not None and msg.text.startswith("Yes, Sam can go on the trip. I'll send")
        assert "On Mon, Jun 3, 2024 at 9:12\u202fAM Ms. Rivera" in msg.text
        assert msg.html is not None and 'class="gmail_quote"' in msg.html
        assert (msg.auto_reply, msg.bounce, msg.problems) == (None, None, ())
        assert msg.received_via == "imap"

    def test_outlook_html_only_reply(self) -> None:
        msg = parse(fixture("outlook_html_only_reply.eml"))
        # Message-ID folded onto its own line by Exchange: the folding whitespace is not part of it
        assert msg.provider_id == "<AM7PR02MB5862B1C3E7A8F4D2A9E0C1B4D2F62@AM7PR02MB5862.eurprd02.prod.outlook.com>"
        assert (msg.sender, msg.sender_name) == ("r.okafor@outlook.com", "Robert Okafor")
        assert msg.recipients == (REPLY2,)
        assert msg.subject == "RE: Early pick-up this week"
        assert msg.references == ("<d1077.0a9b8c7d6e5f4a3b@lincoln-elementary.org>",)
        assert msg.text is None
        assert msg.html is not None and 'id="divRplyFwdMsg"' in msg.html
        assert "a dentist\u2019s appointment" in msg.html          # windows-1252 quoted-printable
        assert (msg.auto_reply, msg.bounce, msg.problems) == (None, None, ())

    def test_apple_mail_reply(self) -> None:
        msg = parse(fixture("apple_mail_reply.eml"))
        assert msg.provider_id == "<9C7B4E2A-5F1D-4B3C-8E6A-2D9F0C1B7A34@icloud.com>"
        assert (msg.sender, msg.sender_name) == ("camille.laurent@icloud.com", "Camille Laurent")
        assert msg.recipients == (REPLY,)
        assert msg.references == ("<d1093.77aa66bb55cc44dd@lincoln-elementary.org>",)
        assert msg.text is not None and msg.text.startswith("That works for us.")
        assert msg.html is not None and '<blockquote type="cite">' in msg.html
        assert (msg.auto_reply, msg.bounce, msg.problems) == (None, None, ())

    def test_forwarded_message_keeps_every_recipient_header_in_order(self) -> None:
        msg = parse(fixture("forwarded_message.eml"))
        assert msg.sender == "marco.rossi@yahoo.com"
        # Delivered-To, X-Original-To (same address), To, Cc
        assert msg.recipients == (REPLY, "office@lincoln-elementary.org", "giulia.rossi@gmail.com")
        assert msg.subject == "Fwd: Bus times change"
        assert msg.references == ()
        assert msg.text is not None and "---------- Forwarded message ---------" in msg.text
        assert msg.auto_reply is None

    def test_iphone_reply_in_base64_utf8(self) -> None:
        msg = parse(fixture("iphone_reply_base64.eml"))
        assert (msg.sender, msg.sender_name) == ("maria.gonzalez@icloud.com", "María González")
        # the display name "Sra. Pérez" is decoded nowhere into an address
        assert msg.recipients == (REPLY2,)
        assert msg.subject == "Re: Reunión de padres"
        assert msg.text is not None and msg.text.startswith("Sí, ahí estaremos. ¡Gracias por avisar! 😊\n")
        assert "Enviado desde mi iPhone" in msg.text
        assert (msg.auto_reply, msg.problems) == (None, ())

    def test_raw_latin1_bytes_in_headers(self) -> None:
        msg = parse(fixture("latin1_subject.eml"))
        # not UTF-8: read as windows-1252 (the WHATWG reading of Latin-1), and said so
        assert msg.subject == "Re: Réunion de rentrée - absence de Chloé jeudi"
        assert msg.sender_name == "Hélène Dubois"
        assert msg.sender == "helene.dubois@orange.fr"
        assert msg.recipients == (REPLY2,)
        assert msg.text is not None and "Chloé sera absente jeudi matin" in msg.text
        assert "non-UTF-8 bytes in Subject (read as windows-1252)" in msg.problems
        assert "non-UTF-8 bytes in From (read as windows-1252)" in msg.problems
        assert msg.auto_reply is None   # "absence" in a reply's subject is a parent's business

    def test_no_message_id_gets_a_digest_of_the_raw_bytes(self) -> None:
        raw = fixture("no_message_id.eml")
        msg = parse(raw)
        assert msg.provider_id == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert parse(raw).provider_id == msg.provider_id                 # the same bytes, the same key
        assert parse(raw + b"\n").provider_id != msg.provider_id
        assert msg.problems == ("no Message-ID",)
        assert (msg.sender, msg.sender_name) == ("kwame.mensah@example.com", "")
        assert msg.references == (TOKEN_REF,)
        assert msg.text == "OK for Kofi. He will bring a packed lunch.\n"

    def test_broken_multipart_boundary_keeps_the_words(self) -> None:
        msg = parse(fixture("broken_boundary.eml"))
        assert msg.sender == "tom.baker@example.org"
        assert msg.text is not None and "Ella has a cold, she might not make it on Friday." in msg.text
        assert "broken MIME: StartBoundaryNotFoundDefect" in msg.problems
        assert msg.references == (OUR_ID,)
        assert msg.auto_reply is None

    @pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml")))
    def test_crlf_and_lf_line_endings_read_the_same(self, name: str) -> None:
        lf = fixture(name).replace(b"\r\n", b"\n")
        a, b = parse(lf), parse(lf.replace(b"\n", b"\r\n"))
        fields = [f.name for f in dataclasses.fields(InboundMessage) if f.name not in ("raw", "provider_id")]
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}

    @pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml")))
    def test_bodies_are_those_of_decode_bodies(self, name: str) -> None:
        raw = fixture(name)
        msg = parse(raw)
        assert (msg.text, msg.html) == decode_bodies(raw)

    def test_raw_is_kept_as_text_for_audit(self) -> None:
        raw = fixture("latin1_subject.eml")
        msg = parse(raw)
        assert msg.raw == raw.decode("utf-8", errors="replace")
        assert "\ufffd" in msg.raw            # the Latin-1 bytes, replaced, not guessed


class TestSender:
    def test_lower_cased_with_idna_domain_as_a_labels(self) -> None:
        msg = parse(mail("From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen.Mueller@Bücher.Example>"))
        assert msg.sender == "juergen.mueller@xn--bcher-kva.example"
        assert msg.sender_name == "Jürgen Müller"

    def test_bare_address(self) -> None:
        assert parse(mail("From: PARENT@Example.COM")).sender == "parent@example.com"

    def test_quoted_display_name_with_a_comma(self) -> None:
        msg = parse(mail('From: "Okafor, Robert" <r.okafor@outlook.com>'))
        assert (msg.sender, msg.sender_name, msg.problems) == ("r.okafor@outlook.com", "Okafor, Robert", ())

    def test_old_comment_form_gives_the_name(self) -> None:
        msg = parse(mail("From: MAILER-DAEMON@mx.example.org (Mail Delivery System)"))
        assert (msg.sender, msg.sender_name) == ("mailer-daemon@mx.example.org", "Mail Delivery System")

    def test_no_from_header(self) -> None:
        raw = b"To: " + REPLY.encode() + b"\r\nMessage-ID: <a@b.c>\r\n\r\nHi\r\n"
        msg = parse(raw)
        assert (msg.sender, msg.sender_name) == ("", "")
        assert "no From header" in msg.problems
        assert msg.recipients == (REPLY,) and msg.text == "Hi\n"

    def test_from_without_an_address(self) -> None:
        msg = parse(mail("From: Just A Name"))
        assert msg.sender == ""
        assert "no valid From address" in msg.problems

    def test_two_from_addresses_take_the_first_and_say_so(self) -> None:
        msg = parse(mail("From: first@example.com, second@example.org"))
        assert msg.sender == "first@example.com"
        assert "2 From addresses; the first is used" in msg.problems

    def test_two_from_headers_take_the_first_and_say_so(self) -> None:
        msg = parse(mail("From: first@example.com", "From: second@example.org"))
        assert msg.sender == "first@example.com"
        assert "2 From headers; the first is used" in msg.problems

    def test_an_encoded_display_name_cannot_add_or_replace_the_address(self) -> None:
        # decoded, the name reads "Office <office@school.example>, x@y.z": still only a name
        msg = parse(mail("From: =?utf-8?q?Office_=3Coffice=40school=2Eexample=3E=2C_x=40y=2Ez?= <mallory@evil.example>"))
        assert msg.sender == "mallory@evil.example"
        assert msg.sender_name == "Office <office@school.example>, x@y.z"
        assert not any("From addresses" in p for p in msg.problems)


class TestHeaderInjection:
    def test_the_injection_fixture(self) -> None:
        msg = parse(fixture("header_injection.eml"))
        # the first mailbox of the first From, never the second one
        assert msg.sender == "mallory@evil.example"
        assert msg.sender_name == "Principal Office Bcc: all-parents@lincoln-elementary.org"
        # the token inside an encoded display name is not an address
        assert msg.recipients == (REPLY, "mallory-drop@evil.example")
        assert REPLY2 not in msg.recipients
        # CR/LF decoded from the Subject are flattened, never kept as line breaks
        assert msg.subject == "Urgent Bcc: all-parents@lincoln-elementary.org Hello"
        # a NUL inside the Message-ID: not a usable key
        assert msg.provider_id.startswith("sha256:")
        assert set(msg.problems) >= {
            "2 From headers; the first is used",
            "2 From addresses; the first is used",
            "header injection: line break or NUL in From display name",
            "header injection: line break or NUL in Subject",
            "malformed Message-ID",
        }
        assert msg.auto_reply is None

    @pytest.mark.parametrize("encoded", [
        "=?utf-8?q?Hi=0D=0ABcc:_x@y.z?=", "=?utf-8?q?Hi=0ABcc:_x@y.z?=", "=?utf-8?q?Hi=00Bcc:_x@y.z?=",
        "=?utf-8?b?SGnigKhCY2M6IHhAeS56?=",       # U+2028 LINE SEPARATOR
    ])
    def test_line_breaks_and_nul_in_a_decoded_subject(self, encoded: str) -> None:
        msg = parse(mail(f"Subject: {encoded}"))
        assert msg.subject == "Hi Bcc: x@y.z"
        assert "header injection: line break or NUL in Subject" in msg.problems

    def test_nul_in_an_address_field(self) -> None:
        msg = parse(mail("From: parent@example.com\x00evil@x.example"))
        assert "header injection: NUL in From" in msg.problems
        assert "\x00" not in msg.sender


class TestRecipients:
    def test_order_is_delivered_to_x_original_to_to_cc(self) -> None:
        msg = parse(mail("Cc: Cee <cc@example.com>", "To: To <to@example.com>",
                         "X-Original-To: orig@example.com", "Delivered-To: delivered@example.com"))
        assert msg.recipients == ("delivered@example.com", "orig@example.com", "to@example.com", "cc@example.com")

    def test_lower_cased_and_each_once(self) -> None:
        msg = parse(mail(f"Delivered-To: {REPLY.upper()}", f"To: School <{REPLY}>, Other@Example.com",
                         "Cc: other@example.com"))
        assert msg.recipients == (REPLY, "other@example.com")

    def test_every_delivered_to_header_counts_topmost_first(self) -> None:
        msg = parse(mail("Delivered-To: last-hop@example.com", "Delivered-To: first-hop@example.com"))
        assert msg.recipients[:2] == ("last-hop@example.com", "first-hop@example.com")

    def test_groups_and_empty_fields_add_nothing(self) -> None:
        msg = parse(mail("To: undisclosed-recipients:;", "Cc:"))
        assert msg.recipients == ()

    def test_idna_domains(self) -> None:
        assert parse(mail("To: écoles@Bücher.example")).recipients == ("écoles@xn--bcher-kva.example",)

    def test_capped(self) -> None:
        many = ", ".join(f"p{i}@example.com" for i in range(250))
        msg = parse(mail(f"To: {many}"))
        assert len(msg.recipients) == 100 and msg.recipients[0] == "p0@example.com"
        assert "250 recipients; the first 100 kept" in msg.problems


class TestMessageIdAndReferences:
    def test_whitespace_around_the_message_id_is_stripped(self) -> None:
        assert parse(mail("Message-ID:   <abc.123@host.example>  ")).provider_id == "<abc.123@host.example>"

    @pytest.mark.parametrize("value", ["abc@host.example", "<no-at-sign>", "<a@b> <c@d>", "<a b@c>", "<>",
                                       "<" + "x" * 250 + "@host.example>", "<ü@host.example>"])
    def test_malformed_message_id_falls_back_to_the_digest(self, value: str) -> None:
        raw = mail(f"Message-ID: {value}")
        msg = parse(raw)
        assert msg.provider_id == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert "malformed Message-ID" in msg.problems

    def test_in_reply_to_then_references_deduplicated(self) -> None:
        msg = parse(mail("References: <a@x> <b@x>\r\n\t<c@x> <a@x>", "In-Reply-To: <c@x>"))
        assert msg.references == ("<c@x>", "<a@x>", "<b@x>")

    def test_text_around_the_ids_is_ignored(self) -> None:
        msg = parse(mail("In-Reply-To: Your message of Mon, 3 Jun 2024 <d42.ab@school.example> (Ms Rivera)"))
        assert msg.references == ("<d42.ab@school.example>",)

    def test_ids_are_kept_as_written(self) -> None:
        # our Message-IDs are looked up as stored: case matters
        assert parse(mail("In-Reply-To: <CAF=Xy+Q@Mail.Gmail.com>")).references == ("<CAF=Xy+Q@Mail.Gmail.com>",)

    def test_capped_at_100(self) -> None:
        refs = " ".join(f"<r{i}@x>" for i in range(300))
        msg = parse(mail(f"References: {refs}"))
        assert len(msg.references) == 100 and msg.references[0] == "<r0@x>"


class TestSubject:
    def test_adjacent_encoded_words_join_without_the_space_between(self) -> None:
        # RFC 2047 §6.2; the "ó" is split across the two words, byte by byte
        msg = parse(mail("Subject: =?utf-8?q?Excursi=C3?= =?utf-8?q?=B3n_del?= viernes"))
        assert msg.subject == "Excursión del viernes"

    def test_folded_subject_is_unfolded(self) -> None:
        msg = parse(mail("Subject: =?utf-8?b?UmU6IEV4Y3Vyc2nDs24=?=\r\n =?utf-8?b?IGRlbCB2aWVybmVz?="))
        assert msg.subject == "Re: Excursión del viernes"

    def test_raw_utf8_subject(self) -> None:
        msg = parse(mail("Subject: Re: 自动回复的问题 and Ça va"))
        assert (msg.subject, msg.problems) == ("Re: 自动回复的问题 and Ça va", ())

    def test_unknown_charset_in_an_encoded_word(self) -> None:
        assert parse(mail("Subject: =?x-unknown?q?Caf=C3=A9?=")).subject == "Café"

    def test_no_subject(self) -> None:
        assert parse(mail()).subject == ""


class TestAutoReplies:
    def test_exchange_out_of_office_in_spanish(self) -> None:
        msg = parse(fixture("exchange_ooo_spanish.eml"))
        assert msg.auto_reply == "Auto-Submitted: auto-replied"
        assert msg.subject == "Respuesta automática: Excursión del viernes"
        assert (msg.sender, msg.sender_name) == ("lucia.martin@colegio-sanjuan.es", "Lucía Martín")
        assert msg.references == (OUR_ID,)
        assert msg.bounce is None

    def test_exchange_out_of_office_without_auto_submitted_is_known_by_its_subject(self) -> None:
        msg = parse(without(fixture("exchange_ooo_spanish.eml"), "auto-submitted"))
        assert msg.auto_reply == "subject: respuesta automática"

    def test_exchange_rule_reply_in_a_language_we_do_not_list(self) -> None:
        raw = without(fixture("exchange_ooo_spanish.eml"), "auto-submitted", "subject")
        raw = raw.replace(b"Thread-Topic:", b"Subject: =?utf-8?b?6Ieq5YuV5b+c562UOiDpgaDotrM=?=\nThread-Topic:")
        msg = parse(raw)
        assert msg.subject == "自動応答: 遠足"
        assert msg.auto_reply == "Exchange inbox rule + X-Auto-Response-Suppress"

    def test_gmail_vacation_responder(self) -> None:
        raw = fixture("gmail_vacation.eml")
        assert parse(raw).auto_reply == "Auto-Submitted: auto-replied"
        # its subject is whatever the person typed; each of its three headers suffices alone
        assert parse(raw).subject == "Out of office until 10 June"
        assert parse(without(raw, "auto-submitted")).auto_reply == "Precedence: bulk"
        assert parse(without(raw, "auto-submitted", "precedence")).auto_reply == "X-Autoreply: yes"
        assert parse(without(raw, "auto-submitted", "precedence", "x-autoreply")).auto_reply is None

    def test_mailing_list_message(self) -> None:
        raw = fixture("mailing_list.eml")
        assert parse(raw).auto_reply == "Precedence: list"
        assert parse(without(raw, "precedence")).auto_reply == "mailing list: List-Id"
        assert parse(without(raw, "precedence", "list-id")).auto_reply == "mailing list: List-Unsubscribe"

    @pytest.mark.parametrize(("header", "reason"), [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),              # RFC 3834
        ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
        ("Auto-Submitted: auto-notified", "Auto-Submitted: auto-notified"),
        ("Auto-Submitted: Auto-Replied; owner-email=\"x@y.z\"", "Auto-Submitted: auto-replied"),
        ("Auto-Submitted: no", None),
        ("Auto-Submitted: No (a person wrote this)", None),
        ("Precedence: bulk", "Precedence: bulk"),
        ("Precedence: junk", "Precedence: junk"),
        ("Precedence: list", "Precedence: list"),
        ("Precedence: auto_reply", "Precedence: auto_reply"),                          # cPanel
        ("Precedence: first-class", None),
        ("X-Precedence: auto_reply", "X-Precedence: auto_reply"),
        ("X-Autoreply: yes", "X-Autoreply: yes"),                                      # Gmail
        ("X-AutoReply: YES", "X-Autoreply: yes"),
        ("X-Autorespond: Away", "X-Autorespond"),                                      # cPanel
        ("X-Autogenerated: Reply", "X-Autogenerated: Reply"),                          # CommuniGate
        ("X-Autogenerated: Forward", None),                # a person's mail passed on, not a reply
        ("X-FC-MachineGenerated: true", "X-FC-MachineGenerated: true"),                # FirstClass
        ("List-Id: Parents <parents.lists.example.org>", "mailing list: List-Id"),     # RFC 2919
        ("List-Unsubscribe: <mailto:leave@lists.example.org>", "mailing list: List-Unsubscribe"),
        ("Return-Path: <>", "null sender: Return-Path <>"),                            # RFC 5321 §4.5.5
        ("Return-Path: <parent@example.com>", None),
        ("Return-Path:", None),
        ("From: MAILER-DAEMON@mx.example.org", "sender: mailer-daemon"),
        ("From: Postmaster <postmaster@example.org>", "sender: postmaster"),
        ("X-Auto-Response-Suppress: All", None),           # Outlook sets it on people's mail too
        ("X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply", None),
        ("X-MS-Exchange-Inbox-Rules-Loop: parent@example.com", None),
    ])
    def test_header_rules(self, header: str, reason: str | None) -> None:
        assert parse(mail(header, "Subject: Re: Trip")).auto_reply == reason

    def test_x_auto_response_suppress_counts_only_with_exchange_rules_engine_marks(self) -> None:
        suppress = "X-Auto-Response-Suppress: All"
        assert parse(mail(suppress, "X-MS-Exchange-Inbox-Rules-Loop: p@example.com")).auto_reply \
            == "Exchange inbox rule + X-Auto-Response-Suppress"
        assert parse(mail(suppress, "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent")).auto_reply \
            == "Exchange inbox rule + X-Auto-Response-Suppress"
        # an Outlook user answering somebody's auto-reply: the header and the subject are not enough
        assert parse(mail(suppress, "Subject: RE: Automatic reply: Trip")).auto_reply is None
        # nor a parent reporting an absence from Outlook
        assert parse(mail(suppress, "Subject: Absent")).auto_reply is None
        assert parse(mail("X-Auto-Response-Suppress: DR, RN", "X-MS-Exchange-Inbox-Rules-Loop: p@x.com")).auto_reply \
            is None

    def test_weak_subjects_count_with_exchange_rules_engine_marks(self) -> None:
        assert parse(mail("Subject: Absent", "X-MS-Exchange-Inbox-Rules-Loop: p@example.com")).auto_reply \
            == "Exchange inbox rule + subject: absent"

    @pytest.mark.parametrize("subject", [
        "Out of office", "Out of Office: back Monday 10 June", "OUT OF OFFICE - back Monday",
        "Out of office (until 5 June)", "Out of Office AutoReply: Trip", "Automatic reply: Trip",
        "Automatic reply: RE: Trip", "Auto-Reply: Trip", "Autoreply: Trip", "Auto Response",
        "Away from my desk", "[EXTERNAL] Automatic reply: Trip", "Jane Smith is out of the office.",
        "Respuesta automática: Excursión", "Respuesta automatica: Excursión", "Fuera de la oficina",
        "Réponse automatique : Sortie scolaire", "Absence du bureau", "Automatische Antwort: Ausflug",
        "Abwesenheitsnotiz: AW: Ausflug", "Nicht im Büro", "Resposta automática: Passeio",
        "Fora do escritório", "Trả lời tự động: Chuyến đi", "自动回复：春游", "رد تلقائي: رحلة",
        "Automatisch antwoord: Schoolreis", "Risposta automatica: Gita", "Odpowiedź automatyczna: Wycieczka",
        "Respuesta automa\u0301tica: Excursión",     # a decomposed accent (macOS) compares composed
    ])
    def test_out_of_office_subjects(self, subject: str) -> None:
        assert parse(mail(f"Subject: {subject}")).auto_reply is not None

    @pytest.mark.parametrize("subject", [
        "Re: out of office next week?",             # a question, not a label
        "Out of office next week?",
        "Re: Out of office: teacher training day",  # a reply to a school message so titled
        "RE: Automatic reply: Trip",                # a person answering somebody's auto-reply
        "Absent",                                   # parents report absences: never alone
        "Absent: Chloé",
        "Ausente: Marco, jueves",
        "Re: Absent",
        "On vacation",
        "Re: Automatic replies on the school account",
        "Autoreplying is off now",
        "自动回复请假",                                 # no separator after the label
        "Re: Is Ms Smith out of the office?",
        "Re: Trip",
    ])
    def test_subjects_a_person_writes(self, subject: str) -> None:
        assert parse(mail(f"Subject: {subject}")).auto_reply is None

    def test_read_receipt(self) -> None:
        raw = mail("Subject: Read: Trip", content_type='multipart/report; report-type=disposition-notification; boundary="r"',
                   body="--r\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n"
                        "--r\r\nContent-Type: message/disposition-notification\r\n\r\n"
                        "Final-Recipient: rfc822; parent@example.com\r\n"
                        "Disposition: manual-action/MDN-sent-manually; displayed\r\n--r--\r\n")
        msg = parse(raw)
        assert (msg.auto_reply, msg.bounce) == ("report: disposition-notification", None)


class TestBounces:
    def test_postfix_dsn(self) -> None:
        msg = parse(fixture("postfix_dsn_5_1_1.eml"))
        assert msg.bounce == Bounce(
            recipients=("j.doe.family@example.net",),
            action="failed",
            status="5.1.1",
            diagnostic="550 5.1.1 <j.doe.family@example.net>: Recipient address rejected: "
                       "User unknown in virtual mailbox table",
            original_message_id=OUR_ID,                 # from the text/rfc822-headers part
        )
        assert msg.bounce.permanent
        assert msg.auto_reply == "bounce"
        assert (msg.sender, msg.sender_name) == ("mailer-daemon@mx.lincoln-elementary.org", "Mail Delivery System")
        assert msg.text is not None and msg.text.startswith("This is the mail system at host")
        assert msg.problems == ()

    def test_exchange_dsn(self) -> None:
        msg = parse(fixture("exchange_dsn.eml"))
        assert msg.bounce == Bounce(
            recipients=("guardian.kim@contoso.com",),
            action="failed",
            status="5.1.10",
            diagnostic="550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient guardian.kim@contoso.com "
                       "not found by SMTP address lookup",
            original_message_id="<d1120.c0ffee00deadbeef@lincoln-elementary.org>",   # message/rfc822
        )
        assert msg.auto_reply == "bounce"
        assert msg.text is not None and msg.text.startswith("Your message to guardian.kim@contoso.com couldn't")
        assert msg.html is not None

    def test_qmail_bounce(self) -> None:
        msg = parse(fixture("qmail_bounce.eml"))
        assert msg.bounce == Bounce(
            recipients=("grandpa.joe@oldisp.example",),
            action="failed",
            status="5.1.1",
            diagnostic="Sorry, no mailbox here by that name. (#5.1.1)",
            original_message_id="<d1133.0123456789abcdef@lincoln-elementary.org>",
        )
        assert msg.auto_reply == "bounce"

    def test_a_quoted_or_forwarded_qmail_bounce_from_a_person_is_not_a_bounce(self) -> None:
        body = fixture("qmail_bounce.eml").split(b"\n\n", 1)[1].decode()
        msg = parse(mail("Subject: Fwd: failure notice", body=body))
        assert (msg.bounce, msg.auto_reply) == (None, None)
        msg = parse(mail("Subject: Fwd: failure notice", body="Did my mail get lost?\n\n" + body))
        assert msg.bounce is None

    @staticmethod
    def dsn(*blocks: str, returned: str = "", ctype: str = "message/delivery-status", cte: str = "") -> bytes:
        status = "\r\n\r\n".join(["Reporting-MTA: dns; mx.example.net", *blocks]) + "\r\n"
        if cte == "base64":
            status = base64.encodebytes(status.encode()).decode()
        parts = ["--b\r\nContent-Type: text/plain\r\n\r\nDelivery report.\r\n",
                 f"--b\r\nContent-Type: {ctype}\r\n" + (f"Content-Transfer-Encoding: {cte}\r\n" if cte else "")
                 + f"\r\n{status}"]
        if returned:
            parts.append(f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n")
        return mail("From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                    "Subject: Delivery Status Notification (Failure)",
                    content_type='multipart/report; report-type=delivery-status; boundary="b"',
                    body="".join(parts) + "--b--\r\n")

    def test_delayed(self) -> None:
        msg = parse(self.dsn("Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
                             "Will-Retry-Until: Tue, 11 Jun 2024 10:00:00 +0000"))
        assert msg.bounce == Bounce(recipients=("slow@example.net",), action="delayed", status="4.4.1")
        assert not msg.bounce.permanent
        assert msg.auto_reply == "bounce"

    def test_the_most_serious_outcome_with_its_recipients(self) -> None:
        msg = parse(self.dsn("Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.1",
                             "Final-Recipient: rfc822; Gone@Example.net\r\nAction: failed\r\nStatus: 5.1.1",
                             "Final-Recipient: rfc822; gone2@example.net\r\nAction: failed\r\nStatus: 5.2.1"))
        assert msg.bounce is not None
        assert (msg.bounce.action, msg.bounce.status) == ("failed", "5.1.1")
        assert msg.bounce.recipients == ("gone@example.net", "gone2@example.net")

    def test_original_recipient_comes_first(self) -> None:
        # Original-Recipient is the address as we sent it; Final-Recipient may be an alias's target
        msg = parse(self.dsn("Original-Recipient: rfc822;parent@family.example\r\n"
                             "Final-Recipient: rfc822; parent.smith@mailhost.example\r\nAction: failed\r\nStatus: 5.2.2"))
        assert msg.bounce is not None
        assert msg.bounce.recipients == ("parent@family.example", "parent.smith@mailhost.example")

    def test_action_and_status_recovered_from_each_other_and_the_diagnostic(self) -> None:
        msg = parse(self.dsn("Final-Recipient: rfc822; x@example.net\r\n"
                             "Diagnostic-Code: smtp; 550-5.7.1 Message rejected as spam\r\n  by policy"))
        assert msg.bounce is not None
        assert (msg.bounce.action, msg.bounce.status) == ("failed", "5.7.1")
        assert msg.bounce.diagnostic == "550-5.7.1 Message rejected as spam by policy"

    def test_original_message_id_from_returned_headers(self) -> None:
        msg = parse(self.dsn("Final-Recipient: rfc822; x@example.net\r\nAction: failed\r\nStatus: 5.1.1",
                             returned=f"From: noreply@lincoln-elementary.org\r\nMessage-ID:\r\n {OUR_ID}\r\nSubject: x"))
        assert msg.bounce is not None and msg.bounce.original_message_id == OUR_ID

    def test_base64_encoded_status_part(self) -> None:
        msg = parse(self.dsn("Final-Recipient: rfc822; x@example.net\r\nAction: failed\r\nStatus: 5.1.1", cte="base64"))
        assert msg.bounce is not None
        assert (msg.bounce.recipients, msg.bounce.status) == (("x@example.net",), "5.1.1")

    def test_global_delivery_status(self) -> None:
        # RFC 6533: SMTPUTF8 addresses, address type "utf-8"
        msg = parse(self.dsn("Final-Recipient: utf-8; élève@école.example\r\nAction: failed\r\nStatus: 5.1.1",
                             ctype="message/global-delivery-status"))
        assert msg.bounce is not None and msg.bounce.recipients == ("élève@xn--cole-9oa.example",)

    def test_report_without_recipient_fields(self) -> None:
        msg = parse(self.dsn())
        assert msg.bounce == Bounce(recipients=(), action="", status="")
        assert msg.auto_reply == "bounce"
        assert "delivery status report without per-recipient fields" in msg.problems


class TestNeverRaises:
    @pytest.mark.parametrize("raw", [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        bytes(range(256)) * 64,
        b"From: \xff\xfe\x00<@>\r\nTo: ,,,;;;<<>>\r\nSubject: =?\xff?q?x?=\r\nMessage-ID: <\xff@\xfe>\r\n\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=\r\n\r\n--\r\n",
        (b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
         b"--b\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff:\r\n:::\r\n--b--"),
        b"From: " + b"(" * 5000 + b"a@b.c\r\n\r\n",
        b"Subject: =?utf-8?b?====?= =?utf-8?q?=ZZ?= =?utf-8*en?b?SGk=?=\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 200,
        b"\r\n\r\nFrom: late@example.com\r\n\r\nbody",
    ], ids=["empty", "garbage", "all-bytes", "hostile-headers", "empty-boundary-report", "bad-status-part",
            "nested-comments", "bad-encoded-words", "deep", "leading-blank-lines"])
    def test_hostile_input(self, raw: bytes) -> None:
        msg = parse(raw)
        assert isinstance(msg, InboundMessage) and msg.channel is ChannelKind.EMAIL and msg.provider_id
        for value in (msg.provider_id, msg.sender, msg.sender_name, msg.subject, msg.raw, msg.text or "",
                      msg.html or "", *msg.recipients, *msg.references, *msg.problems):
            assert "\x00" not in value                            # PostgreSQL text refuses NUL
            value.encode("utf-8")                                # no lone surrogates

    @pytest.mark.parametrize("raw", [bytearray(b"From: a@b.c\r\n\r\nhi"), memoryview(b"From: a@b.c\r\n\r\nhi")])
    def test_bytes_like_input(self, raw: bytes) -> None:
        assert parse(raw).sender == "a@b.c"

    def test_text_instead_of_bytes(self) -> None:
        msg = parse_inbound_email("From: a@b.c\r\n\r\nhi")  # type: ignore[arg-type]
        assert (msg.sender, msg.text) == ("a@b.c", "hi")
        assert "raw message given as text, not bytes" in msg.problems

    def test_deep_nesting_still_gives_the_header(self) -> None:
        raw = b"From: Parent <parent@example.com>\r\nMessage-ID: <deep@example.com>\r\n" + b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(3000))
        msg = parse(raw)
        assert (msg.sender, msg.provider_id) == ("parent@example.com", "<deep@example.com>")
        assert any(p.startswith("broken MIME") for p in msg.problems)

    def test_an_absurd_number_of_parts_is_cut(self) -> None:
        parts = b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n" * 12_000
        raw = mail(content_type='multipart/mixed; boundary="x"', body="--x\r\nContent-Type: text/plain\r\n\r\n"
                   "The real text.\r\n") + parts + b"--x--\r\n"
        msg = parse(raw)
        assert msg.text == "The real text."
        assert "more than 10000 lines starting with '--': parsed up to there" in msg.problems

    def test_leading_blank_lines_before_the_header(self) -> None:
        msg = parse(b"\r\n\r\nFrom: late@example.com\r\nMessage-ID: <x@y>\r\n\r\nbody")
        assert (msg.sender, msg.provider_id, msg.text) == ("late@example.com", "<x@y>", "body")
        assert "blank lines before the header" in msg.problems


class TestSizeLimit:
    def test_a_50_mb_message(self) -> None:
        head = mail("Subject: Photos from the trip", content_type='multipart/mixed; boundary="m"', body="")
        raw = head + (b"--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPhotos attached.\r\n"
                      b"--m\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; filename=a.jpg\r\n"
                      b"Content-Transfer-Encoding: base64\r\n\r\n")
        raw += b"/9j/4AAQSkZJRgABAQ\r\n" * ((50 * 1024 * 1024 - len(raw)) // 20)
        msg = parse(raw)
        limit = 10 * 1024 * 1024
        assert f"oversized: {len(raw)} bytes > limit {limit}" in msg.problems
        # the header is read, the text part is the body, the attachment never is
        assert (msg.provider_id, msg.sender, msg.subject) == ("<m1@example.com>", "parent@example.com",
                                                              "Photos from the trip")
        assert msg.text == "Photos attached." and msg.html is None
        # only the first max_bytes are kept, with a note
        assert msg.raw.endswith(f"\n[truncated: {len(raw)} bytes received, the first {limit} kept]\n")
        assert len(msg.raw) < limit + 100

    def test_the_digest_covers_every_byte_even_when_oversized(self) -> None:
        raw = b"From: a@b.c\r\n\r\n" + b"x" * 5000
        assert parse(raw, max_bytes=1000).provider_id == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert parse(raw, max_bytes=1000).provider_id != parse(raw + b"y", max_bytes=1000).provider_id

    def test_an_attached_text_file_is_not_the_body(self) -> None:
        raw = mail(content_type='multipart/mixed; boundary="m"', body=(
            "--m\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\n"
            "NOT THE BODY\r\n--m\r\nContent-Type: text/plain\r\n\r\nThe body\r\n--m--\r\n"))
        assert parse(raw).text == "The body"
