"""Inbound e-mail: header field values.

A raw header value (str, 8-bit bytes as surrogate escapes) becomes one line of display text: 8-bit
bytes read as UTF-8, else windows-1252; folding undone; RFC 2047 encoded-words decoded; line breaks
(an injection attempt) and controls replaced. On that: the Subject, the Message-ID (or a digest of
the raw bytes when there is none we can trust) and the msg-ids of In-Reply-To and References. The
header regular expressions the other e-mail modules share are defined here. Whatever was wrong
goes into ``problems``.
"""
from __future__ import annotations

import binascii
import hashlib
import re

from gateway.channels.email_bodies import decode_charset

_MAX_REFERENCES = 100        # In-Reply-To + References msg-ids kept (a long thread has ~20-50)
_MAX_MSG_ID = 255            # InboundEvent.provider_id is a 255-character column
_MAX_SUBJECT = 998           # RFC 5322 §2.1.1 line limit; a longer subject is cut there

# msg-id (RFC 5322 §3.6.4): "<" id-left "@" id-right ">", printable ASCII without "<", ">", "@" on
# either side. Quoted id-left forms (obsolete) are not worth the risk of a bad provider_id.
_MSG_ID_CHARS = r"[\x21-\x3b\x3d\x3f\x41-\x7e]+"
_MSG_ID = re.compile(rf"<{_MSG_ID_CHARS}@{_MSG_ID_CHARS}>")
# Anything that would end a line in some reader: CR, LF, NUL (RFC 5322 §2.2 forbids it), and what
# str.splitlines() splits on. Inside a decoded header value they can only be an injection attempt.
_LINE_BREAKING = re.compile("[\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x00-\x1f\x7f]")
_WSP_RUN = re.compile(r"\s+")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")     # RFC 5322 §2.2.3 unfolding
# RFC 2047 §2 encoded-word; the charset may carry an RFC 2231 "*language" suffix.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _first(headers: dict[str, list[str]], name: str, problems: list[str] | None = None) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1 and problems is not None:
        problems.append(f"{len(values)} {_TITLE.get(name, name)} headers; the first is used")
    return values[0]


_TITLE = {"from": "From", "subject": "Subject", "message-id": "Message-ID", "in-reply-to": "In-Reply-To",
          "references": "References", "to": "To", "cc": "Cc", "delivered-to": "Delivered-To",
          "x-original-to": "X-Original-To"}


def _text_of(value: str, name: str, problems: list[str]) -> str:
    """A raw header value as text: 8-bit bytes read as UTF-8, else windows-1252; unfolded."""
    if not value.isascii():
        octets = value.encode("utf-8", "surrogateescape")
        try:
            value = octets.decode("utf-8")
        except UnicodeDecodeError:
            value = octets.decode("cp1252", errors="replace")
            problems.append(f"non-UTF-8 bytes in {_TITLE.get(name, name)} (read as windows-1252)")
    return _FOLD.sub("", value)


def _fix_surrogates(text: str) -> str:
    """Surrogate escapes (undecodable bytes the email package kept) back to text."""
    if not _SURROGATE.search(text):
        return text
    octets = text.encode("utf-8", "surrogateescape")
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        return octets.decode("cp1252", errors="replace")


def _decode_words(text: str, name: str, problems: list[str]) -> str:
    """RFC 2047 encoded-words decoded; the rest of the text is left as it is.

    Whitespace between two adjacent encoded-words is dropped (§6.2), and adjacent words in the same
    charset are joined before decoding, so a UTF-8 character split across two words survives.
    """
    if "=?" not in text:
        return text
    pieces: list[tuple[str | None, bytes]] = []   # (charset, octets) or (None, text as UTF-8)
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position:match.start()]
        previous_encoded = bool(pieces) and pieces[-1][0] is not None
        if between and not (between.isspace() and previous_encoded):
            pieces.append((None, between.encode("utf-8", "surrogateescape")))
        charset, kind, encoded = match.group(1).split("*", 1)[0], match.group(2).upper(), match.group(3)
        try:
            if kind == "B":
                compact = re.sub(r"[^A-Za-z0-9+/]", "", encoded)
                octets = binascii.a2b_base64(compact + "=" * (-len(compact) % 4))
            else:
                octets = binascii.a2b_qp(encoded.encode("utf-8", "surrogateescape"), header=True)
        except (binascii.Error, ValueError):
            problems.append(f"bad encoded-word in {_TITLE.get(name, name)}")
            pieces.append((None, match.group(0).encode("utf-8", "surrogateescape")))
        else:
            label = charset.lower()
            if pieces and pieces[-1][0] == label:
                pieces[-1] = (label, pieces[-1][1] + octets)
            else:
                pieces.append((label, octets))
        position = match.end()
    if position < len(text):
        pieces.append((None, text[position:].encode("utf-8", "surrogateescape")))
    out = []
    for label, octets in pieces:
        if label is None:
            out.append(octets.decode("utf-8", "surrogateescape"))
        else:
            out.append(decode_charset(octets, label))
    return "".join(out)


def _clean(text: str, name: str, problems: list[str]) -> str:
    """One line of display text: no line breaks (an injection attempt), controls or runs of space."""
    text = _fix_surrogates(text)
    if _LINE_BREAKING.search(text):
        problems.append(f"header injection: line break or NUL in {name}")
    text = _CONTROLS.sub(" ", _LINE_BREAKING.sub(" ", text))
    return _WSP_RUN.sub(" ", text).strip()


def _subject(headers: dict[str, list[str]], problems: list[str]) -> str:
    value = _first(headers, "subject", problems)
    if value is None:
        return ""
    subject = _clean(_decode_words(_text_of(value, "subject", problems), "subject", problems),
                     "Subject", problems)
    if len(subject) > _MAX_SUBJECT:
        problems.append(f"Subject longer than {_MAX_SUBJECT} characters, cut")
        subject = subject[:_MAX_SUBJECT]
    return subject


def _message_id(headers: dict[str, list[str]], data: bytes, problems: list[str]) -> str:
    """The Message-ID as written (brackets kept), or a digest of the raw bytes when there is none
    we can trust as a key (missing, malformed, too long for the column)."""
    value = _first(headers, "message-id", problems)
    if value is None:
        problems.append("no Message-ID")
        return _digest(data)
    candidate = _FOLD.sub("", value).strip()
    if len(candidate) > _MAX_MSG_ID or not _MSG_ID.fullmatch(candidate):
        problems.append("malformed Message-ID")
        return _digest(data)
    return candidate


def _references(headers: dict[str, list[str]], problems: list[str]) -> tuple[str, ...]:
    """In-Reply-To, then References: every msg-id as written, in order, once, at most 100."""
    found: dict[str, None] = {}
    for name in ("in-reply-to", "references"):
        for value in headers.get(name, ()):
            for msg_id in _MSG_ID.findall(value):
                if len(msg_id) <= _MAX_MSG_ID:
                    found.setdefault(msg_id)
    if len(found) > _MAX_REFERENCES:
        problems.append(f"{len(found)} references; the first {_MAX_REFERENCES} kept")
    return tuple(list(found)[:_MAX_REFERENCES])
