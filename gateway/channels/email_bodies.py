"""Inbound e-mail: the body texts of an RFC 5322 message.

Only the channel layer sees MIME. ``decode_bodies`` turns raw message bytes into the
text/plain and text/html bodies as ``str``. Threads then work on text (see
``gateway.threads.reply_text``). ``decode_charset`` (bytes to text by a charset label) is also
used for header values and delivery reports.

``_DEFAULT`` is the policy messages are parsed with: ``email.policy.default`` with parsed header
objects memoised (see ``_Policy``). ``parse_inbound_email`` parses with it as well and hands the
parsed message to ``_decode_bodies``, so a message is not parsed twice.

Robustness rules (inbound mail is whatever a client or a spammer produced):

* Parsing uses ``email.policy.default``. If that raises, the message is parsed again with
  ``compat32``, which is more lenient about broken headers. Nothing escapes: the worst
  answer is ``(None, None)``.
* The body is the first text/plain and the first text/html part in document order that is
  not an attachment. A part with ``Content-Disposition: attachment`` never counts. A part
  with a filename (an attached .txt shown inline) counts only if nothing else is found.
  Attached messages (message/rfc822) are not descended into: their text is somebody
  else's mail.
* Transfer encodings (base64, quoted-printable, 8bit) are undone by the ``email``
  package. Charsets are decoded strictly in this order: the declared charset, then UTF-8.
  If those fail, the declared charset is used with replacement characters. Labels follow
  WHATWG practice: iso-8859-1 and us-ascii are read as windows-1252, after a UTF-8 try
  (8-bit text labelled ASCII/Latin-1 is usually UTF-8). gb2312 is read as gb18030,
  shift_jis as cp932 and euc-kr as cp949. An unknown or bogus label gets UTF-8, then
  windows-1252.
* A declared multipart whose boundary is missing or never appears (a defect the parser
  records) still yields its raw body as text/plain, so the sender's words are not lost.
* Line endings come back as "\\n".
"""
from __future__ import annotations

import codecs
import email
import email.policy
import functools
import re
from email.message import Message

__all__ = ["decode_bodies", "decode_charset"]

_MAX_DEPTH = 32  # MIME nesting we follow; deeper is hostile or broken

# Labels mail clients use that Python does not know, or knows too narrowly.
_LABEL_UPGRADES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252",
    "ascii": "cp1252", "iso-8859-8-i": "iso-8859-8", "iso-8859-6-i": "iso-8859-6",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cn-gb": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "ms_kanji": "cp932", "windows-31j": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949",
    "big5": "big5hkscs", "tis-620": "cp874", "windows-874": "cp874",
    "iso-2022-jp": "iso2022_jp_2", "unicode-1-1-utf-7": "utf-7", "utf8": "utf-8",
}
# Codecs that are not a mail charset even though Python has them under that name.
_REFUSED = {"idna", "punycode", "unicode_escape", "raw_unicode_escape", "undefined", "mbcs",
            "oem", "charmap"}
# Labels where a strict UTF-8 read comes first (mislabelled UTF-8 is common).
_UTF8_FIRST = {"cp1252", "iso8859-1", "ascii"}
# Wider relatives tried before UTF-8 (ISO-2022-JP from older clients uses JIS X 0201 kana).
_ALSO_TRY = {"iso2022_jp_2": ["iso2022_jp_ext"]}


class _Policy(email.policy.EmailPolicy):
    """``email.policy.default`` with parsed header objects memoised.

    The feedparser asks each part for its Content-Type several times, and the default policy
    parses the header anew each time (most of the time spent parsing a message went there). Header
    objects are read-only, so sharing them between messages changes nothing but the speed.
    """

    def header_fetch_parse(self, name: str, value: str):  # type: ignore[no-untyped-def]
        if hasattr(value, "name") or len(value) > 2048:
            return super().header_fetch_parse(name, value)
        return _fetch_header(name, value)


@functools.lru_cache(maxsize=4096)
def _fetch_header(name: str, value: str):  # type: ignore[no-untyped-def]
    return email.policy.default.header_fetch_parse(name, value)


_DEFAULT = _Policy()


def decode_bodies(raw: bytes) -> tuple[str | None, str | None]:
    """(text/plain body, text/html body) of an RFC 5322 message; None where absent."""
    return _decode_bodies(raw, None)


def _decode_bodies(raw: bytes, parsed: Message | None) -> tuple[str | None, str | None]:
    """decode_bodies, reusing ``parsed`` (``raw`` already parsed with ``_DEFAULT``) if given."""
    for policy in (_DEFAULT, email.policy.compat32):
        try:
            if policy is _DEFAULT and parsed is not None:
                msg = parsed
            else:
                msg = email.message_from_bytes(raw, policy=policy)
            return _bodies(msg)
        except Exception:  # noqa: BLE001 -- any parser/decoder failure: try the lenient policy
            continue
    return None, None


def _bodies(msg: Message) -> tuple[str | None, str | None]:
    found: dict[str, list[Message]] = {"plain": [], "html": [], "plain?": [], "html?": []}
    _collect(msg, found, 0)
    text = _first_decoded(found["plain"] or found["plain?"])
    html = _first_decoded(found["html"] or found["html?"])
    if text is not None and not text.strip() and html is not None and html.strip():
        text = None    # an empty text/plain alternative next to a real HTML body
    if text is None and html is None and not msg.is_multipart() \
            and msg.get_content_maintype() == "multipart":
        salvaged = _salvaged_bodies(msg)
        if salvaged is not None:
            return salvaged
        text = _decode_part(msg)  # boundary missing: keep the words, whatever they look like
    return text, html


# A delimiter line (RFC 2046 5.1.1: "--" then 1-70 bchars, not ending in a space).
_DELIMITER_LINE = re.compile(rb"^--([0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?])[ \t]*\r?$",
                             re.MULTILINE)
_PART_HEADER = re.compile(rb"[!-9;-~]+:")


def _salvaged_bodies(msg: Message) -> tuple[str | None, str | None] | None:
    """A multipart whose declared boundary never appears, but whose body is plainly MIME parts
    written with another boundary (a client bug seen in the wild): read the parts with the boundary
    the body actually uses, so the MIME part headers do not end up in the sender's words. Only when
    the first delimiter-shaped line is followed by a header line; otherwise None (keep the raw text)."""
    payload = msg.get_payload()
    if not isinstance(payload, str):
        return None
    data = payload.encode("utf-8", "surrogateescape")
    match = _DELIMITER_LINE.search(data)
    if match is None or not _PART_HEADER.match(data[match.end():].lstrip(b"\r\n")):
        return None
    boundary = match.group(1).decode("ascii")
    head = f'Content-Type: multipart/{msg.get_content_subtype()}; boundary="{boundary}"\r\n\r\n'.encode()
    try:
        salvaged = email.message_from_bytes(head + data, policy=_DEFAULT)
        if not salvaged.is_multipart():
            return None
        text, html = _bodies(salvaged)
    except Exception:  # noqa: BLE001 -- keep the raw text instead
        return None
    return (text, html) if text is not None or html is not None else None


def _collect(part: Message, found: dict[str, list[Message]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    ctype = part.get_content_type()
    if depth and part.get_content_maintype() == "message":
        return                                 # an attached e-mail is not this sender's body
    if part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    _collect(sub, found, depth + 1)
        return
    if ctype not in ("text/plain", "text/html"):
        return
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return
    kind = ctype.split("/")[1]
    found[kind if not part.get_filename() else kind + "?"].append(part)


def _first_decoded(parts: list[Message]) -> str | None:
    for part in parts:
        text = _decode_part(part)
        if text is not None:
            return text
    return None


def _decode_part(part: Message) -> str | None:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 -- a broken transfer encoding: use the raw text
        payload = None
    if payload is None:
        raw = part.get_payload()
        if not isinstance(raw, str):
            return None
        payload = raw.encode("ascii", "surrogateescape")
    if not isinstance(payload, bytes):
        return None
    try:
        label = part.get_content_charset()
    except Exception:  # noqa: BLE001 -- unparsable parameters
        label = None
    text = decode_charset(payload, label)
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def decode_charset(payload: bytes, label: str | None) -> str:
    """Bytes to text by a declared charset label, never raising (see module rules)."""
    codec = _codec(label)
    order: list[str]
    if codec is None:
        order = ["utf-8", "cp1252"]
    elif codec in _UTF8_FIRST:
        order = ["utf-8", "cp1252"]
    else:
        order = [codec, *_ALSO_TRY.get(codec, []), "utf-8"]
    for name in order:
        try:
            return payload.decode(name)
        except (UnicodeError, LookupError):
            continue
    return payload.decode(codec or "cp1252", errors="replace")


def _codec(label: str | None) -> str | None:
    """A Python text codec name for a MIME charset label, or None if unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _LABEL_UPGRADES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return info.name
