"""Inbound e-mail: the address fields.

From (the sender's address and display name) and the recipient fields (Delivered-To, X-Original-To,
To, Cc, in that order), each address lower-cased with its domain as IDNA A-labels. The usual field
shapes are read with a regular expression, the rest with the email package's RFC 5322 parser, and
very long fields, or fields that parser cannot take, leniently. Invalid addresses are left out and
recorded in ``problems``.
"""
from __future__ import annotations

import email.policy
import email.utils
import functools
import re

import idna

from gateway.channels.email_headers import (
    _TITLE,
    _clean,
    _decode_words,
    _first,
    _fix_surrogates,
    _text_of,
)

_MAX_RECIPIENTS = 100        # Delivered-To/X-Original-To/To/Cc addresses kept
_MAX_ADDRESS = 320           # 64 local + @ + 255 domain (RFC 5321 §4.5.3.1), as the sender column
_MAX_STRICT_FIELD = 8192     # longer address fields get the linear-time parser

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
