"""Inbound e-mail: the body texts of an RFC 5322 message.

Only the channel layer sees MIME. ``decode_bodies`` turns raw message bytes into the
text/plain and text/html bodies as ``str``. Threads then work on text (see
``gateway.threads.reply_text``).

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

``parse_inbound_email`` turns one raw message (IMAP, or the raw-MIME webhook) into our
``InboundMessage``: addresses, Message-ID, references, subject, bodies, whether it is automatic
(auto-reply, list mail, bounce) and, for a delivery status notification, the ``Bounce``. It never
raises; whatever was wrong with the message goes into ``problems``. The rules are written next
to the code that applies them.
"""
from __future__ import annotations

import binascii
import codecs
import email
import email.message
import email.parser
import email.policy
import email.utils
import functools
import hashlib
import re
import unicodedata
from email.message import Message

import idna

from gateway.channels.base import Bounce, ChannelKind, InboundMessage

__all__ = ["decode_bodies", "parse_inbound_email"]

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


# ==================================================================================================
# parse_inbound_email: one raw message -> InboundMessage
# ==================================================================================================

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
_MAX_REFERENCES = 100        # In-Reply-To + References msg-ids kept (a long thread has ~20-50)
_MAX_RECIPIENTS = 100        # Delivered-To/X-Original-To/To/Cc addresses kept
_MAX_MSG_ID = 255            # InboundEvent.provider_id is a 255-character column
_MAX_ADDRESS = 320           # 64 local + @ + 255 domain (RFC 5321 §4.5.3.1), as the sender column
_MAX_STRICT_FIELD = 8192     # longer address fields get the linear-time parser (see _addresses)
_MAX_SUBJECT = 998           # RFC 5322 §2.1.1 line limit; a longer subject is cut there
_MAX_DIAGNOSTIC = 1000
_MAX_PROBLEMS = 30

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


def parse_inbound_email(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES,
                        received_via: str = "") -> InboundMessage:
    """One raw RFC 5322 message as our InboundMessage. Never raises: see ``problems``."""
    data, problems = _as_bytes(raw)
    try:
        return _parse_inbound(data, max_bytes, received_via, problems)
    except Exception as exc:  # noqa: BLE001 -- the last line of defence: keep the item, say why
        problems.append(f"unparsable: {type(exc).__name__}: {str(exc)[:200]}")
        return InboundMessage(
            channel=ChannelKind.EMAIL, provider_id=_digest(data), sender="", recipients=(), text=None,
            problems=tuple(problems[:_MAX_PROBLEMS]), raw=_raw_text(data, max_bytes),
            received_via=received_via)


def _as_bytes(raw: object) -> tuple[bytes, list[str]]:
    if isinstance(raw, bytes):
        return raw, []
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw), []
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape"), ["raw message given as text, not bytes"]
    return b"", [f"raw message is a {type(raw).__name__}, not bytes"]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _raw_text(data: bytes, max_bytes: int) -> str:
    """The message for audit: UTF-8 with replacement characters, NUL-free (PostgreSQL text
    refuses NUL), cut at max_bytes with a note saying so."""
    limit = max(max_bytes, 0)
    text = data[:limit].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if len(data) > limit:
        text += f"\n[truncated: {len(data)} bytes received, the first {limit} kept]\n"
    return text


def _parse_inbound(data: bytes, max_bytes: int, received_via: str, problems: list[str]) -> InboundMessage:
    limit = max(max_bytes, 0)
    body = data
    if len(data) > limit:
        # Parse only the first max_bytes: the headers and, usually, the text part come first and
        # what is cut off is an attachment. Parsing 50 MB would cost time and memory for nothing.
        problems.append(f"oversized: {len(data)} bytes > limit {limit}")
        body = data[:limit]
    if not body.strip():
        problems.append("empty message")
    stripped = body.lstrip(b"\r\n")
    if len(stripped) != len(body) and _HEADER_START.match(stripped):
        problems.append("blank lines before the header")
        body = stripped

    body = _bounded(body, problems)
    msg, complete = _parse_message(body, problems)
    headers = _header_map(msg)
    _report_defects(msg, problems)

    provider_id = _message_id(headers, data, problems)
    sender, sender_name = _sender(headers, problems)
    recipients = _recipients(headers, problems)
    references = _references(headers, problems)
    subject = _subject(headers, problems)

    text, html = _decode_bodies(body, msg) if complete else (None, None)
    text, html = _nul_free(text, problems), _nul_free(html, problems)

    bounce, report_type = _bounce(msg, headers, problems) if complete else (None, None)
    if bounce is None and text is not None:
        bounce = _qmail_bounce(text, sender, headers)
    auto_reply = "bounce" if bounce is not None else _auto_reply(headers, sender, subject, report_type)

    deduped = list(dict.fromkeys(problems))
    return InboundMessage(
        channel=ChannelKind.EMAIL,
        provider_id=provider_id,
        sender=sender,
        recipients=recipients,
        text=text,
        html=html,
        subject=subject,
        references=references,
        sender_name=sender_name,
        auto_reply=auto_reply,
        bounce=bounce,
        problems=tuple(deduped[:_MAX_PROBLEMS]),
        raw=_raw_text(data, max_bytes),
        received_via=received_via,
    )


_HEADER_START = re.compile(rb"[!-9;-~]+:")   # RFC 5322 §2.2 field name, then ":"


_MAX_BOUNDARY_LINES = 10_000


def _bounded(data: bytes, problems: list[str]) -> bytes:
    """The message cut before its 10,001st line starting with "--". The parser's time grows with
    the number of MIME parts (200,000 empty parts in 7 MB took 5 s); a person's mail has a few."""
    if data.count(b"\n--") <= _MAX_BOUNDARY_LINES:
        return data
    position = -1
    for _ in range(_MAX_BOUNDARY_LINES + 1):
        position = data.find(b"\n--", position + 1)
    problems.append(f"more than {_MAX_BOUNDARY_LINES} lines starting with '--': parsed up to there")
    return data[:position + 1]


def _parse_message(data: bytes, problems: list[str]) -> tuple[Message | None, bool]:
    """(message, complete). When the MIME structure defeats the parser (nesting deep enough to
    exhaust the recursion limit), the header alone is parsed: the addresses still count."""
    for policy in (_DEFAULT, email.policy.compat32):
        try:
            return email.message_from_bytes(data, policy=policy), True
        except Exception as exc:  # noqa: BLE001 -- try the lenient policy, then the header alone
            problems.append(f"broken MIME: {type(exc).__name__}")
            if isinstance(exc, RecursionError):
                break                     # the lenient policy would recurse just as deep
    try:
        return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True), False
    except Exception:  # noqa: BLE001
        return None, False


def _header_map(msg: Message | None) -> dict[str, list[str]]:
    """Lower-cased field name -> raw values in order (str; 8-bit bytes as surrogate escapes)."""
    headers: dict[str, list[str]] = {}
    if msg is None:
        return headers
    for name, value in msg.raw_items():
        if isinstance(value, str):
            headers.setdefault(name.strip().lower(), []).append(value)
    return headers


def _report_defects(msg: Message | None, problems: list[str]) -> None:
    """The MIME structure defects the parser recorded, in this message's own parts (not in an
    attached message; header syntax is reported per field)."""
    if msg is None:
        return
    seen: list[str] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and len(seen) < 10:
        part, depth = stack.pop()
        for defect in getattr(part, "defects", ()):
            name = type(defect).__name__
            if name not in seen:
                seen.append(name)
        if depth < _MAX_DEPTH and part.is_multipart() and not (depth and _content_type(part).startswith("message/")):
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((sub, depth + 1) for sub in reversed(payload) if isinstance(sub, Message))
    problems.extend(f"broken MIME: {name}" for name in seen)


def _nul_free(body: str | None, problems: list[str]) -> str | None:
    if body is not None and "\x00" in body:
        problems.append("NUL characters in the body replaced")
        return body.replace("\x00", "\ufffd")
    return body


# --------------------------------------------------------------------------------- header values


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


# ------------------------------------------------------------------------------------- addresses

# The usual shapes of an address field, parsed without the email package's full RFC 5322 parser
# (which costs ~80 µs a field and grows faster than linearly): "addr", "<addr>", "Name <addr>",
# '"Name" <addr>'. Anything else (comments, groups, quoted commas, obsolete routes) goes to the
# full parser. The name may hold encoded-words: they are decoded after the structure is known,
# so a decoded "," or "<" cannot add an address.
_ADDR = r"[^\s<>()\[\],;:\\\"@]+@[^\s<>()\[\],;:\\\"@]+"
_SIMPLE_MAILBOX = re.compile(
    rf"""\s*(?:
        (?P<bare>{_ADDR})
      | (?:"(?P<quoted>(?:[^"\\\r\n]|\\.)*)"|(?P<plain>[^"(),:;<>@\[\]\\\r\n]*?))\s*<(?P<angle>{_ADDR})>
    )\s*""", re.VERBOSE)


def _mailboxes(value: str, name: str, problems: list[str]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of one address field, in order; invalid ones left out."""
    if "\x00" in value:
        problems.append(f"header injection: NUL in {name}")
        value = value.replace("\x00", " ")
    simple = _simple_mailboxes(value, name, problems)
    if simple is not None:
        return simple
    if len(value) > _MAX_STRICT_FIELD:
        return _lenient_mailboxes(value, name, problems)
    try:
        header = email.policy.default.header_factory("To", value)
        parsed = [(a.display_name or "", a.username or "", a.domain or "") for a in header.addresses]
    except Exception:  # noqa: BLE001 -- the full parser has raised on hostile input before
        return _lenient_mailboxes(value, name, problems)
    out = []
    for display_name, local, domain in parsed:
        addr = _addr_spec(local, domain)
        if addr:
            out.append((_fix_surrogates(display_name), addr))
    return out


def _simple_mailboxes(value: str, name: str, problems: list[str]) -> list[tuple[str, str]] | None:
    items = value.split(",") if '"' not in value else [value]
    out = []
    for item in items:
        if not item.strip():
            continue
        match = _SIMPLE_MAILBOX.fullmatch(item)
        if match is None:
            return None
        addr = match.group("bare") or match.group("angle")
        display = match.group("quoted")
        if display is not None:
            display = re.sub(r"\\(.)", r"\1", display)
        else:
            display = match.group("plain") or ""
        out.append((_decode_words(display, name, problems), addr))
    return out


def _lenient_mailboxes(value: str, name: str, problems: list[str]) -> list[tuple[str, str]]:
    problems.append(f"{name} parsed leniently")
    out = []
    for display_name, addr in email.utils.getaddresses([value]):
        local, _, domain = addr.rpartition("@")
        if local and domain and not re.search(r"[\s<>]", addr):
            out.append((_decode_words(display_name, name, problems), addr))
    return out


def _addr_spec(local: str, domain: str) -> str:
    """local@domain from parser output, "" if either part is missing or not a plausible atom."""
    if not local or not domain or re.search(r"[\s\x00-\x1f\x7f<>]", local + domain):
        return ""
    if re.search(r"[\s\"(),:;<>@\\]", local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"


def _normalise_address(addr: str) -> tuple[str, str | None]:
    """Lower-cased, domain as IDNA A-labels (UTS #46, as for outbound mail). (address, problem)."""
    local, _, domain = addr.rpartition("@")
    domain = domain.strip().rstrip(".")
    if not local or not domain:
        return "", f"invalid address {addr[:100]!r}"
    ascii_domain, problem = _ascii_domain(domain)
    normal = f"{local.lower()}@{ascii_domain}"
    if len(normal) > _MAX_ADDRESS:
        return "", f"address longer than {_MAX_ADDRESS} characters"
    return normal, problem


@functools.lru_cache(maxsize=1024)
def _ascii_domain(domain: str) -> tuple[str, str | None]:
    if domain.isascii():
        return domain.lower(), None
    try:
        return idna.encode(domain, uts46=True).decode("ascii"), None
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        return domain.lower(), f"invalid internationalised domain {domain[:100]!r}: {exc}"


def _sender(headers: dict[str, list[str]], problems: list[str]) -> tuple[str, str]:
    """(From address, display name). The first mailbox only: two From addresses or two From fields
    are recorded as a problem, never merged (nothing can ride along in a second address)."""
    value = _first(headers, "from", problems)
    if value is None:
        problems.append("no From header")
        return "", ""
    text = _text_of(value, "from", problems)
    if len(text) > _MAX_STRICT_FIELD:
        problems.append("From header too long, cut")
        text = text[:_MAX_STRICT_FIELD]
    boxes = _mailboxes(text, "From", problems)
    if not boxes:
        problems.append("no valid From address")
        return "", ""
    if len(boxes) > 1:
        problems.append(f"{len(boxes)} From addresses; the first is used")
    display_name, addr = boxes[0]
    sender, problem = _normalise_address(addr)
    if problem:
        problems.append(f"From: {problem}")
    if not display_name and "(" in text:
        # "addr (Name)": the old comment form, still written by some MTAs (Postfix bounces).
        for comment_name, comment_addr in email.utils.getaddresses([text])[:1]:
            if comment_addr.lower() == addr.lower():
                display_name = _decode_words(comment_name, "From", problems)
    return sender, _clean(display_name, "From display name", problems)


_RECIPIENT_FIELDS = ("delivered-to", "x-original-to", "to", "cc")


def _recipients(headers: dict[str, list[str]], problems: list[str]) -> tuple[str, ...]:
    """Delivered-To, X-Original-To, To, Cc addresses in that order (DESIGN 4: the reply token is
    looked for in that order), lower-cased, each once."""
    found: dict[str, None] = {}
    for name in _RECIPIENT_FIELDS:
        for value in headers.get(name, ()):
            title = _TITLE[name]
            for _, addr in _mailboxes(_text_of(value, name, problems), title, problems):
                normal, problem = _normalise_address(addr)
                if problem:
                    problems.append(f"{title}: {problem}")
                if normal:
                    found.setdefault(normal)
    if len(found) > _MAX_RECIPIENTS:
        problems.append(f"{len(found)} recipients; the first {_MAX_RECIPIENTS} kept")
    return tuple(list(found)[:_MAX_RECIPIENTS])


# ------------------------------------------------------------------------------------------ bounces

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")     # RFC 3463 enhanced status code
_ACTION_RANK = {"failed": 0, "delayed": 1, "delivered": 2, "relayed": 3, "expanded": 4}
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")   # RFC 3464, RFC 6533
_RETURNED_MESSAGE = ("message/rfc822", "message/global")
_RETURNED_HEADERS = ("text/rfc822-headers", "message/global-headers")        # RFC 6522, RFC 6533
_HEADER_MESSAGE_ID = re.compile(rf"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<{_MSG_ID_CHARS}@{_MSG_ID_CHARS}>)",
                                re.IGNORECASE | re.MULTILINE)


def _bounce(msg: Message, headers: dict[str, list[str]],
            problems: list[str]) -> tuple[Bounce | None, str | None]:
    """(Bounce, report type) for a multipart/report (RFC 6522). Only report-type=delivery-status
    (RFC 3464) gives a Bounce; other reports (read receipts, RFC 8098; abuse reports, RFC 5965)
    give just their type, which makes the message automatic."""
    report = _find_report(msg, 0)
    if report is None:
        return None, None
    report_type = (_param(report, "report-type") or "").strip().lower()
    if report_type not in ("delivery-status", "global-delivery-status"):
        return None, report_type or "unknown"
    parts = [p for p in (report.get_payload() if isinstance(report.get_payload(), list) else [])
             if isinstance(p, Message)]
    blocks: list[dict[str, str]] = []
    original: str | None = None
    for part in parts:
        ctype = _content_type(part)
        if ctype in _DSN_TYPES and not blocks:
            blocks = _status_blocks(part)
        elif ctype in _RETURNED_MESSAGE and original is None:
            original = _returned_message_id(part)
        elif ctype in _RETURNED_HEADERS and original is None:
            original = _first_message_id(_decoded_text(part))
    if original is None:
        # Some MTAs (Exchange among them) also name the original in In-Reply-To/References.
        for value in headers.get("in-reply-to", ()) + headers.get("references", ()):
            ids = _MSG_ID.findall(value)
            if ids:
                original = ids[0]
                break
    recipients_blocks = [b for b in blocks if {"final-recipient", "original-recipient", "action", "status"} & b.keys()]
    if not recipients_blocks:
        problems.append("delivery status report without per-recipient fields")
        return Bounce(recipients=(), action="", status="", original_message_id=original), report_type
    entries = []
    for block in recipients_blocks:
        status = _status_code(block.get("status", "")) or _status_code(block.get("diagnostic-code", ""))
        action = block.get("action", "").strip().lower().split(" ")[0].split(";")[0]
        if action not in _ACTION_RANK:
            action = {"5": "failed", "4": "delayed", "2": "delivered"}.get(status[:1], action)
        addresses = []
        for field in ("original-recipient", "final-recipient"):   # the address we sent to first
            addr = _dsn_address(block.get(field, ""))
            if addr:
                addresses.append(addr)
        entries.append((action, status, _diagnostic(block.get("diagnostic-code", "")), addresses))
    # One Bounce per message: the most serious outcome reported, with every recipient that had it.
    worst = min(entries, key=lambda e: _ACTION_RANK.get(e[0], len(_ACTION_RANK)))
    recipients = tuple(dict.fromkeys(a for e in entries if e[0] == worst[0] for a in e[3]))
    return Bounce(recipients=recipients, action=worst[0], status=worst[1], diagnostic=worst[2],
                  original_message_id=original), report_type


def _find_report(part: Message, depth: int) -> Message | None:
    """The multipart/report: the message itself, or inside a multipart wrapper a filter added.
    Attached messages are not looked into (a forwarded bounce is somebody else's)."""
    ctype = _content_type(part)
    if ctype == "multipart/report":
        return part
    if depth >= 2 or not ctype.startswith("multipart/") or not part.is_multipart():
        return None
    payload = part.get_payload()
    for sub in payload if isinstance(payload, list) else []:
        if isinstance(sub, Message):
            found = _find_report(sub, depth + 1)
            if found is not None:
                return found
    return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001 -- unparsable Content-Type: RFC 2045 default
        return "text/plain"


def _param(part: Message, name: str) -> str | None:
    try:
        value = part.get_param(name)
    except Exception:  # noqa: BLE001
        return None
    if isinstance(value, tuple):       # RFC 2231 (charset, language, value)
        value = value[2]
    return value if isinstance(value, str) else None


def _decoded_text(part: Message) -> str:
    """A leaf part's content as text, whatever its type or transfer encoding."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if isinstance(payload, bytes):
        return decode_charset(payload, None)
    raw = part.get_payload()
    if isinstance(raw, str):
        return _fix_surrogates(raw)
    if isinstance(raw, list):          # parsed into sub-messages: give their text back
        return "\n\n".join(sub.as_string() if isinstance(sub, Message) else "" for sub in raw)
    return ""


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a message/delivery-status part (RFC 3464 §2.1), field names lower-cased."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable") \
            and _content_type(part) == "message/delivery-status":
        blocks = []
        for sub in payload:          # the parser split message/delivery-status into its blocks
            if isinstance(sub, Message):
                block: dict[str, str] = {}
                for name, value in sub.raw_items():
                    block.setdefault(name.strip().lower(), _fix_surrogates(_FOLD.sub("", str(value))))
                blocks.append(block)
        return blocks
    if isinstance(payload, list):
        # Parsed as something it is not: blocks of base64 text, or (message/global-delivery-status)
        # an encapsulated message. Put the text back together, undo the transfer encoding, parse.
        octets = "\n\n".join(_rejoin(sub) for sub in payload if isinstance(sub, Message)) \
            .encode("utf-8", "surrogateescape")
        try:
            if encoding == "base64":
                octets = binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", octets))
            elif encoding == "quoted-printable":
                octets = binascii.a2b_qp(octets)
        except (binascii.Error, ValueError):
            pass
        return _parse_blocks(decode_charset(octets, None))
    return _parse_blocks(_decoded_text(part))


def _rejoin(sub: Message) -> str:
    """A parsed sub-message's text as it came: its header lines, a blank line, its body."""
    head = "\n".join(f"{name}: {value}" for name, value in sub.raw_items())
    try:
        body = sub.get_payload(decode=True)    # the bytes as received (not "?"-replaced 8-bit text)
    except Exception:  # noqa: BLE001
        body = None
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else ""
    return head + "\n\n" + text


def _parse_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n[ \t]*\n", _FOLD.sub("", text.replace("\r\n", "\n"))):
        block: dict[str, str] = {}
        for line in chunk.split("\n"):
            name, sep, value = line.partition(":")
            if sep and name.strip() and " " not in name.strip():
                block.setdefault(name.strip().lower(), value.strip())
        if block:
            blocks.append(block)
    return blocks


def _status_code(text: str) -> str:
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def _dsn_address(value: str) -> str:
    """"rfc822; User@Example.org" -> "user@example.org" (RFC 3464 §2.3.2 address-type; RFC 6533's
    "utf-8" type too). Other address types (x400, ...) are not ours."""
    kind, sep, addr = value.partition(";")
    if sep:
        if kind.strip().lower() not in ("rfc822", "utf-8"):
            return ""
    else:
        addr = kind
    addr = addr.strip().strip("<>").strip()
    if not re.fullmatch(_ADDR, addr):
        return ""
    normal, _ = _normalise_address(addr)
    return normal


def _diagnostic(value: str) -> str:
    """Diagnostic-Code without its type ("smtp; 550 5.1.1 ..." -> "550 5.1.1 ...")."""
    kind, sep, rest = value.partition(";")
    text = rest if sep and re.fullmatch(r"\s*[A-Za-z][\w-]*\s*", kind) else value
    text = _WSP_RUN.sub(" ", _CONTROLS.sub(" ", text)).strip()
    return text[:_MAX_DIAGNOSTIC]


def _returned_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        for name, value in payload[0].raw_items():
            if name.strip().lower() == "message-id":
                candidate = _FOLD.sub("", str(value)).strip()
                return candidate if _MSG_ID.fullmatch(candidate) and len(candidate) <= _MAX_MSG_ID else None
        return None
    return _first_message_id(_decoded_text(part))


def _first_message_id(text: str) -> str | None:
    match = _HEADER_MESSAGE_ID.search(text)
    return match.group(1) if match and len(match.group(1)) <= _MAX_MSG_ID else None


# qmail's bounce is plain text, not a DSN (qmail-send, "bouncing" in qmail-send.c). Recognised
# only when the text opens with qmail's own greeting AND the message comes from the mail system
# (a mailer-daemon/postmaster From, or a null Return-Path): a parent forwarding or quoting a qmail
# bounce has their own words first and their own address in From.
_QMAIL_GREETING = re.compile(r"\A\s*Hi\. This is the qmail-send program at [^\n]*\n", re.IGNORECASE)
_QMAIL_COPY = re.compile(r"^--- (?:Below this line is a copy of the message|"
                         r"Below this line is the original bounce)\.?\s*$", re.MULTILINE)
_QMAIL_RECIPIENT = re.compile(rf"^<({_ADDR})>:[ \t]*$", re.MULTILINE)


def _qmail_bounce(text: str, sender: str, headers: dict[str, list[str]]) -> Bounce | None:
    if not _QMAIL_GREETING.match(text) or not (_is_system_sender(sender) or _null_return_path(headers)):
        return None
    copy = _QMAIL_COPY.search(text)
    report = text[:copy.start()] if copy else text
    matches = list(_QMAIL_RECIPIENT.finditer(report))
    if not matches:
        return None
    recipients, status, diagnostic = [], "", ""
    for index, match in enumerate(matches):
        normal, _ = _normalise_address(match.group(1))
        if normal:
            recipients.append(normal)
        end = matches[index + 1].start() if index + 1 < len(matches) else len(report)
        reason = report[match.end():end]
        if not status:
            hash_code = re.search(r"\(#([245]\.\d{1,3}\.\d{1,3})\)", reason)
            status = hash_code.group(1) if hash_code else _status_code(reason)
            diagnostic = _diagnostic(reason)
    permanent = "permanent error" in report.lower()
    if not status:
        status = "5.0.0" if permanent else "4.0.0"
    original = _first_message_id(text[copy.end():]) if copy else None
    return Bounce(recipients=tuple(dict.fromkeys(recipients)), action="failed", status=status,
                  diagnostic=diagnostic, original_message_id=original)


# ------------------------------------------------------------------------------------ auto-replies
#
# An automatic message is recorded and never posted to a conversation, never answered (DESIGN 3,
# 4). A false positive hides a parent's words from staff, a false negative shows staff an
# out-of-office note; so header rules (which people's mail clients do not set) decide alone, and
# the subject decides alone only where a person would not write that subject.
#
# X-Auto-Response-Suppress ([MS-OXCMAIL] 2.1.3.2.20) is a *request* that recipients not send
# auto-replies ("All", "OOF", "AutoReply", "DR", ...). Exchange puts it on its own OOF replies, but
# Outlook also puts it on ordinary mail (meeting responses, and messages from people), and so do
# newsletters and ticket systems; sisimai dropped it as an auto-reply marker for that reason. So it
# never decides alone. It counts only together with a mark of Exchange's rules engine, which
# generates OOF replies (X-MS-Exchange-Inbox-Rules-Loop: the loop counter of messages redirected,
# forwarded or answered by an inbox rule; X-MS-Exchange-Generated-Message-Source: Mailbox Rules
# Agent). A person's own mail carries neither.

# Precedence (RFC 2076 §3.9, not standardised; RFC 3834 §3.1.8 asks responders not to answer
# these), and cPanel/BoxTrapper's auto_reply value.
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_SYSTEM_LOCAL_PARTS = {"mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster"}


def _auto_reply(headers: dict[str, list[str]], sender: str, subject: str,
                report_type: str | None) -> str | None:
    """Why the message is automatic, or None when a person wrote it."""
    # RFC 3834 §5: Auto-Submitted with any value other than "no" (auto-replied, auto-generated,
    # auto-notified) marks a message sent by a machine.
    for value in headers.get("auto-submitted", ())[:1]:
        keyword = _keyword(value)
        if keyword and keyword != "no":
            return f"Auto-Submitted: {keyword}"
    if report_type:
        # RFC 6522 multipart/report other than a DSN: a read receipt (disposition-notification,
        # RFC 8098), an abuse report (feedback-report, RFC 5965), ...
        return f"report: {report_type[:40]}"
    for name in ("precedence", "x-precedence"):
        for value in headers.get(name, ())[:1]:
            keyword = _keyword(value)
            if keyword in _BULK_PRECEDENCE:
                return f"{_header_title(name)}: {keyword}"
    # Vendor markers of auto-responders: Gmail's vacation responder sets "X-Autoreply: yes" (with
    # Auto-Submitted and Precedence: bulk); cPanel/BoxTrapper X-Autorespond; CommuniGate Pro
    # "X-Autogenerated: Reply" (its Forward/Redirect values are people's mail passed on);
    # DTC X-AutoReply-From / X-Mail-Autoreply; FirstClass "X-FC-MachineGenerated: true";
    # qmail's autoresponder "Delivered-To: Autoresponder".
    for value in headers.get("x-autoreply", ())[:1]:
        keyword = _keyword(value)
        if keyword not in ("no", "false", "0"):
            return f"X-Autoreply: {keyword or 'yes'}"
    for name in ("x-autorespond", "x-autoreply-from", "x-mail-autoreply"):
        if name in headers:
            return _header_title(name)
    if any(_keyword(v) == "reply" for v in headers.get("x-autogenerated", ())):
        return "X-Autogenerated: Reply"
    if any(_keyword(v) == "true" for v in headers.get("x-fc-machinegenerated", ())):
        return "X-FC-MachineGenerated: true"
    if any(_keyword(v) == "autoresponder" for v in headers.get("delivered-to", ())):
        return "Delivered-To: Autoresponder"
    # Mailing lists (List-Id, RFC 2919; List-Unsubscribe, RFC 2369): never a reply to us.
    for name in ("list-id", "list-unsubscribe"):
        if name in headers:
            return f"mailing list: {_header_title(name)}"
    # The mail system itself: a null reverse-path (RFC 5321 §4.5.5: notifications are sent with
    # MAIL FROM:<>, which the delivering MTA writes as Return-Path: <>), or a mailer-daemon /
    # postmaster From.
    if _null_return_path(headers):
        return "null sender: Return-Path <>"
    if _is_system_sender(sender):
        return f"sender: {sender.partition('@')[0]}"
    marker = _subject_marker(subject)
    if marker is not None and marker[0] == "strong":
        return f"subject: {marker[1]}"
    exchange_rule = "x-ms-exchange-inbox-rules-loop" in headers or any(
        "mailbox rules agent" in v.lower() for v in headers.get("x-ms-exchange-generated-message-source", ()))
    if exchange_rule:
        suppress = {t for v in headers.get("x-auto-response-suppress", ())
                    for t in re.split(r"[\s,;]+", v.strip().lower()) if t}
        if suppress & {"all", "oof", "autoreply"}:
            return "Exchange inbox rule + X-Auto-Response-Suppress"
        if marker is not None:
            return f"Exchange inbox rule + subject: {marker[1]}"
    return None


def _keyword(value: str) -> str:
    """The first token of a header value, lower-cased, comments and parameters dropped."""
    text = re.sub(r"\([^()]*\)", " ", _FOLD.sub("", value))
    return text.split(";", 1)[0].strip().lower()[:40]


def _header_title(name: str) -> str:
    return _TITLES_EXTRA.get(name) or "-".join(p.capitalize() for p in name.split("-"))


_TITLES_EXTRA = {"list-id": "List-Id", "x-autoreply-from": "X-AutoReply-From",
                 "x-mail-autoreply": "X-Mail-Autoreply"}


def _null_return_path(headers: dict[str, list[str]]) -> bool:
    # The topmost Return-Path is the final delivery's. "<<>>" is an IIS SMTP quirk.
    for value in headers.get("return-path", ())[:1]:
        return re.sub(r"\s+", "", value) in ("<>", "<<>>")   # an empty field proves nothing
    return False


def _is_system_sender(sender: str) -> bool:
    return sender.partition("@")[0] in _SYSTEM_LOCAL_PARTS


# Out-of-office subjects. A marker counts only at the start of the subject, after "[TAG]"s a
# filter added, and only as a whole label: followed by the end of the subject or by ":", "-",
# "(", "|", "[" ("Automatic reply: Trip", "Out of office", "Abwesenheitsnotiz: Ausflug",
# "自动回复：…"). "Out of office next week?" is a sentence, not a label.
#
# Two tiers:
# * strong: phrases only auto-responders write (Outlook's "Automatic reply:" in each language,
#   "Out of office", ...). Decide alone, but only with no reply/forward prefix before them:
#   responders put their label first ("Automatic reply: RE: Trip"), while "RE: Automatic reply:
#   Trip" is a person answering somebody's auto-reply, and "Re: Out of office: Friday" a parent
#   answering a school message so titled.
# * weak: words a parent writes to a school ("Absent", "Ausente", "On vacation": reporting an
#   absence is the most common message a school receives), and strong markers after a reply prefix.
#   Never decide alone; they count only together with Exchange's rules-engine headers.
_STRONG_MARKERS = (
    # en
    "out of office autoreply", "out of office auto reply", "out of office reply", "out of office alert",
    "out of office", "out of the office", "out-of-office", "automatic reply", "automatic response",
    "auto reply", "auto-reply", "autoreply", "auto response", "auto-response", "autoresponse",
    "away from my desk",
    # es
    "respuesta automática", "respuesta automatica", "fuera de la oficina", "fuera de oficina",
    # fr
    "réponse automatique", "reponse automatique", "absence du bureau", "message d'absence",
    "message d’absence",
    # de
    "automatische antwort", "abwesenheitsnotiz", "abwesenheitsnachricht", "nicht im büro",
    # pt
    "resposta automática", "resposta automatica", "fora do escritório", "fora do escritorio",
    # vi
    "trả lời tự động", "phản hồi tự động",
    # zh
    "自动回复", "自動回覆", "自動回復", "自动答复", "自動答覆",
    # ar
    "رد تلقائي", "رد آلي",
    # nl
    "automatisch antwoord", "afwezigheidsbericht", "niet op kantoor",
    # it
    "risposta automatica", "fuori sede", "fuori ufficio", "fuori dall'ufficio",
    # pl
    "odpowiedź automatyczna", "automatyczna odpowiedź", "poza biurem",
    # sv, da, no; fi
    "autosvar", "automaattinen vastaus",
)
_WEAK_MARKERS = (
    "on vacation", "on leave", "absent", "absente",            # en, fr
    "ausente", "de vacaciones",                               # es
    "en congé", "en vacances",                                # fr
    "abwesend", "im urlaub",                                  # de
    "ausência temporária", "ausencia temporaria", "ausência", "de férias",   # pt
    "vắng mặt",                                               # vi
    "请假", "缺席",                                             # zh
    "غائب",                                                   # ar
    "afwezig", "met vakantie",                                # nl
    "assente", "in ferie",                                    # it
    "nieobecny", "nieobecna", "nieobecność", "na urlopie",    # pl
)


def _fold_marker(text: str) -> str:
    return _WSP_RUN.sub(" ", unicodedata.normalize("NFC", text).casefold()).strip()


def _marker_pattern(markers: tuple[str, ...]) -> re.Pattern[str]:
    folded = sorted({_fold_marker(m) for m in markers}, key=len, reverse=True)
    alternatives = "|".join(re.escape(m).replace(r"\ ", r"\s+") for m in folded)
    # the label, then the end, or a separator; "\b" alone would accept "Out of office next week"
    return re.compile(rf"(?P<marker>{alternatives})\s*(?:$|[:：\-–—(\[|])")


_STRONG = _marker_pattern(_STRONG_MARKERS)
_WEAK = _marker_pattern(_WEAK_MARKERS)
# Reply/forward prefixes of common clients in our languages and their neighbours
# ("Re:", "RE[2]:", "AW:", "SV:", "Antw:", "Odp:", "R:", "RV:", "TR:", "WG:", "Fwd:", "回复:", "رد:").
_REPLY_PREFIX = re.compile(
    r"(?:re|aw|sv|vs|antw|antwort|odp|r|rif|rv|res|resp|ynt|atb|fw|fwd|wg|tr|enc|doorst|pd|tl|"
    r"trả lời|回复|回覆|答复|答覆|转发|轉寄|رد)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*")
_TAG_PREFIX = re.compile(r"\[[^\]]{1,40}\]\s*|\*{2,}[^*]{1,30}\*{2,}\s*")
# Lotus Notes/Domino: "Jane Smith is out of the office." (the whole subject).
_IS_OUT = re.compile(r"\S.* is (?:currently )?out of (?:the )?office\.?")


def _subject_marker(subject: str) -> tuple[str, str] | None:
    """("strong" | "weak", marker) when the subject is an out-of-office label, else None."""
    if not subject:
        return None
    text = _fold_marker(subject)
    prefixed = False
    while True:
        tag = _TAG_PREFIX.match(text)
        if tag:
            text = text[tag.end():]
            continue
        prefix = _REPLY_PREFIX.match(text)
        if prefix:
            text = text[prefix.end():]
            prefixed = True
            continue
        break
    strong = _STRONG.match(text)
    if strong:
        return ("weak" if prefixed else "strong"), strong.group("marker")
    if not prefixed and _IS_OUT.fullmatch(text):
        return "strong", "is out of the office"
    weak = _WEAK.match(text)
    if weak and not prefixed:
        return "weak", weak.group("marker")
    return None
