"""Our OutboundEmail as MIME: multipart text + HTML, our headers, and nothing a recipient can inject.

Header values are checked before they reach the email package: no line breaks (RFC 5322 §2.2,
header injection), addresses as RFC 5322 mailboxes with IDNA domains, Message-IDs as msg-ids, and
the headers we set ourselves never overridden by a caller's extras.
"""
from __future__ import annotations

import email.message
import email.policy
import email.utils
import functools
import re
from datetime import datetime, timezone
from email.headerregistry import Address, AddressHeader

import idna  # IDNA 2008 + UTS #46; installed with email-validator (a project dependency)

from gateway.channels.base import OutboundEmail

__all__ = ["build_mime", "mailbox"]


# Anything that could end a header line. CR and LF are the injection vector; NUL is forbidden by
# RFC 5322 §2.2; the rest are what str.splitlines() treats as line breaks (the email package refuses
# those too, but with a less helpful message, and a receiving parser might split on them).
_LINE_BREAKING = re.compile("[\x00\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

# RFC 5322 §3.6.8: a field name is printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")

# RFC 5322 §3.6.4 msg-id = "<" id-left "@" id-right ">", kept to the dot-atom forms we generate.
_MSG_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")

# Headers build_mime writes itself. Letting `headers` repeat them would give duplicate or
# contradictory fields (two Subjects), and Bcc/Cc/Sender would change who the message appears to be
# for without changing the envelope.
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "To", "Cc", "Bcc", "Sender", "Subject", "Date", "Message-ID", "Reply-To",
        "References", "In-Reply-To", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        "Content-Disposition", "Return-Path", "Received",
    )
)

# RFC 5322 §2.1.1: lines MUST be no more than 998 characters (excluding CRLF).
_MAX_LINE = 998


def _check_header_value(field_name: str, value: str) -> None:
    if _LINE_BREAKING.search(value):
        raise ValueError(f"{field_name}: header values must not contain CR, LF or other line breaks")


@functools.lru_cache(maxsize=4096)
def mailbox(field_name: str, value: str) -> Address:
    """Parse exactly one mailbox ("Name <addr>" or "addr") into an ASCII-domain Address.

    The email package's own parser (header_factory) is used rather than email.utils.parseaddr,
    which silently accepts garbage and takes the first of several addresses.
    """
    _check_header_value(field_name, value)
    header = email.policy.default.header_factory(field_name, value)
    assert isinstance(header, AddressHeader)
    # `defects` lives on BaseHeader, which typeshed does not show as AddressHeader's base.
    defects: tuple[object, ...] = getattr(header, "defects", ())
    if defects:
        raise ValueError(f"{field_name}: invalid address {value!r}: {defects[0]}")
    if len(header.groups) != 1 or header.groups[0].display_name is not None:
        raise ValueError(f"{field_name}: expected exactly one address, got {value!r}")
    parsed = header.addresses[0]
    if not parsed.username or not parsed.domain:
        raise ValueError(f"{field_name}: invalid address {value!r}")
    if not parsed.username.isascii():
        # An internationalised local part needs SMTPUTF8 (RFC 6531) end to end, and with
        # policy=SMTP the email package would wrap it in an encoded-word, which is not an address.
        raise ValueError(f"{field_name}: non-ASCII local parts (SMTPUTF8) are not supported: {value!r}")
    try:
        # IDNA domains go on the wire as A-labels (RFC 5890), in the header and the envelope alike.
        domain = idna.encode(parsed.domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{field_name}: invalid domain in {value!r}: {exc}") from exc
    # Non-ASCII display names are fine: the header folder encodes them per RFC 2047.
    return Address(display_name=parsed.display_name, username=parsed.username, domain=domain)


def _msg_id(field_name: str, value: str) -> str:
    _check_header_value(field_name, value)
    if not value.isascii() or not _MSG_ID.fullmatch(value):
        raise ValueError(f"{field_name}: not a msg-id of the form <left@right>: {value!r}")
    return value


class _VerbatimHeader(str):
    """An ASCII header value written as is, folded only at its own spaces, never encoded.

    The email package folds long unstructured values into RFC 2047 encoded-words. For a
    machine-read field that is fatal: a 120-character List-Unsubscribe URL came out as
    `=?utf-8?q?=3Chttps=3A//...?=`, which no mail client would offer as an unsubscribe link
    (RFC 2369 §2, RFC 8058). EmailPolicy keeps a value that has a `name` attribute as a header
    object and calls its `fold()`; that is the documented hook used here.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _VerbatimHeader:
        self = super().__new__(cls, value)
        self.name = name
        return self

    def fold(self, *, policy: email.policy.Policy) -> str:
        limit = policy.max_line_length or _MAX_LINE
        lines = [f"{self.name}:"]
        # RFC 5322 §2.2.3: fold by putting CRLF before existing whitespace; unfolding restores
        # the value exactly. Splitting on single spaces keeps runs of spaces intact.
        for i, word in enumerate(str(self).split(" ")):
            if i == 0 or len(lines[-1]) + 1 + len(word) <= limit:
                lines[-1] += " " + word
            else:
                lines.append(" " + word)
        if any(len(line) > _MAX_LINE for line in lines):
            raise ValueError(f"{self.name}: a word in this header is longer than {_MAX_LINE} characters")
        return policy.linesep.join(lines) + policy.linesep


def build_mime(item: OutboundEmail) -> email.message.EmailMessage:
    """Turn our OutboundEmail into a MIME message, or raise ValueError if it cannot be sent safely.

    Pure: the only input besides `item` is the clock (for Date). Nothing here can smuggle a header
    in: every value that ends up in a header is checked for line breaks first, and addresses are
    rebuilt from their parsed parts instead of being copied through.
    """
    msg = email.message.EmailMessage(policy=email.policy.SMTP)  # CRLF line endings on the wire
    msg["From"] = mailbox("From", item.from_)
    msg["To"] = mailbox("To", item.to)
    _check_header_value("Subject", item.subject)
    msg["Subject"] = item.subject  # non-ASCII becomes RFC 2047 encoded-words
    msg["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = _msg_id("Message-ID", item.message_id)
    if item.reply_to is not None:
        msg["Reply-To"] = mailbox("Reply-To", item.reply_to)
    if item.references:
        refs = [_msg_id("References", ref) for ref in item.references]
        msg["References"] = " ".join(refs)
        # RFC 5322 §3.6.4: a reply's References is the parent's References followed by the
        # parent's Message-ID, and its In-Reply-To is the parent's Message-ID. So the parent,
        # the message we are answering, is the last element of References.
        msg["In-Reply-To"] = refs[-1]
    for name, value in item.headers:
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"invalid header field name {name!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{name} is set by build_mime and cannot be given in headers")
        _check_header_value(name, value)
        # ASCII values (Auto-Submitted, List-Unsubscribe, List-Unsubscribe-Post, ...) are machine
        # read: keep them byte-exact. Anything else is human text and gets RFC 2047 like Subject.
        if value.isascii():
            header = _VerbatimHeader(name, value)
            header.fold(policy=msg.policy)  # raises ValueError now if it can never be sent
            msg[name] = header
        else:
            msg[name] = value

    # UTF-8 bodies; with policy=SMTP (cte_type 8bit) the email package picks 7bit for ASCII and
    # 8bit otherwise, and aiosmtplib re-encodes to a 7-bit-safe CTE if the server lacks 8BITMIME.
    msg.set_content(item.text, charset="utf-8")
    if item.html is not None:
        # RFC 2046 §5.1.4: alternatives in increasing order of preference, so the HTML goes last.
        msg.add_alternative(item.html, subtype="html", charset="utf-8")
        for part in msg.iter_parts():
            # add_alternative leaves a MIME-Version in the new part; RFC 2045 §4 wants it only
            # at the top level. Harmless, but noise in every message we send.
            del part["MIME-Version"]
    return msg
