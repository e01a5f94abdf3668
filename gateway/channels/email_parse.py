"""Inbound e-mail: one raw RFC 5322 message as our ``InboundMessage``.

``parse_inbound_email`` turns one raw message (IMAP, or the raw-MIME webhook) into our
``InboundMessage``: addresses, Message-ID, references, subject, bodies, whether it is automatic
(auto-reply, list mail, bounce) and, for a delivery status notification, the ``Bounce``. It never
raises; whatever was wrong with the message goes into ``problems``. The rules are written next
to the code that applies them.

This module parses the MIME structure and puts the message together; the parts of the job live in
modules named for what they do:

* ``email_bodies``: the text/plain and text/html bodies (``decode_bodies``, re-exported here),
  charsets, and the parsing policy.
* ``email_headers``: header values: encoded-words, Subject, Message-ID, References.
* ``email_addresses``: From and the recipient fields.
* ``email_autoreply``: whether the message is automatic.
* ``email_dsn``: delivery status notifications (RFC 3464) and qmail bounces.
"""
from __future__ import annotations

import email
import email.parser
import email.policy
import re
from email.message import Message

from gateway.channels.base import ChannelKind, InboundMessage
from gateway.channels.email_addresses import _recipients, _sender
from gateway.channels.email_autoreply import _auto_reply
from gateway.channels.email_bodies import (
    _DEFAULT,
    _MAX_DEPTH,
    _decode_bodies,
    decode_bodies,
)
from gateway.channels.email_dsn import _bounce, _content_type, _qmail_bounce
from gateway.channels.email_headers import _digest, _message_id, _references, _subject

__all__ = ["decode_bodies", "parse_inbound_email"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
_MAX_PROBLEMS = 30


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
