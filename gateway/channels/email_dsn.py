"""Inbound e-mail: bounces.

A delivery status notification (RFC 3464, carried in a multipart/report, RFC 6522; RFC 6533 for the
internationalised forms) becomes our ``Bounce``: the most serious action reported, the recipients
that had it, the status code and diagnostic, and the Message-ID of the returned message. Other
reports (read receipts, abuse reports) give only their type. qmail's plain-text bounce, which is not
a DSN, is recognised by its text and its sender.
"""
from __future__ import annotations

import binascii
import re
from email.message import Message

from gateway.channels.base import Bounce
from gateway.channels.email_addresses import _ADDR, _normalise_address
from gateway.channels.email_autoreply import _is_system_sender, _null_return_path
from gateway.channels.email_bodies import decode_charset
from gateway.channels.email_headers import (
    _CONTROLS,
    _FOLD,
    _MAX_MSG_ID,
    _MSG_ID,
    _MSG_ID_CHARS,
    _WSP_RUN,
    _fix_surrogates,
)

_MAX_DIAGNOSTIC = 1000

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
