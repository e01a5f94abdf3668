"""E-mail out over SMTP (aiosmtplib), with a small pool of persistent connections.

Why a pool: opening a connection costs a TCP handshake, the greeting, EHLO and possibly STARTTLS and
AUTH round trips; measured locally a new connection per message halves throughput (STACK.md), and
over a WAN with TLS it is far worse. A connection carries one transaction at a time (RFC 5321 has
no multiplexing), so concurrency comes from having several.

Everything above this module sees only our types: `build_mime` turns an `OutboundEmail` into MIME,
`send` turns SMTP replies and socket errors into `TransientSendError` / `PermanentSendError`.
"""
from __future__ import annotations

import asyncio
import email.message
import email.policy
import email.utils
import functools
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.headerregistry import Address, AddressHeader

import aiosmtplib
import idna  # IDNA 2008 + UTS #46; installed with email-validator (a project dependency)

from gateway.channels.base import (
    ChannelKind,
    ContactProblem,
    OutboundEmail,
    OutboundItem,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)

log = logging.getLogger(__name__)

__all__ = ["SmtpEmailChannel", "build_mime"]


# --------------------------------------------------------------------------------------------------
# MIME
# --------------------------------------------------------------------------------------------------

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
def _mailbox(field_name: str, value: str) -> Address:
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
    msg["From"] = _mailbox("From", item.from_)
    msg["To"] = _mailbox("To", item.to)
    _check_header_value("Subject", item.subject)
    msg["Subject"] = item.subject  # non-ASCII becomes RFC 2047 encoded-words
    msg["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = _msg_id("Message-ID", item.message_id)
    if item.reply_to is not None:
        msg["Reply-To"] = _mailbox("Reply-To", item.reply_to)
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


# --------------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------------

# RFC 3463 enhanced status code at the start of the reply text, e.g. "5.1.1 User unknown".
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")

# Replies that say the recipient's mailbox does not exist, whatever code the server chose. Kept
# narrow on purpose: "Sender address rejected" or "rejected as spam" must not match.
_NO_SUCH_MAILBOX = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|mailbox (is )?unavailable"
    r"|mailbox not found|does not exist|invalid recipient|unknown recipient",
    re.IGNORECASE,
)

# RFC 4954 §6: 530 authentication required, 534 mechanism too weak, 535 credentials invalid,
# 538 encryption required. These are our configuration, not the message or the recipient:
# retrying after an operator fixes the config must still deliver, so they are transient.
_AUTH_CODES = frozenset({530, 534, 535, 538})

# RFC 5321 §4.2.2/§4.2.3: 550 mailbox unavailable (not found, no access), 551 user not local,
# 553 mailbox name not allowed (syntax). At RCPT they are about the recipient's address.
_RECIPIENT_CODES = frozenset({550, 551, 553})


def _reply_error(code: int, text: str, stage: str) -> SendError:
    """Map an SMTP reply to our outcome. `stage` is the command that got it: mail, rcpt or data.

    RFC 5321 §4.2.1: the first digit is the verdict. 2yz/3yz are positive, 4yz is a transient
    negative completion ("the action may be requested again"), 5yz is a permanent negative
    completion ("the SMTP client SHOULD NOT repeat the exact request").
    """
    reason = f"{code} {text}".strip()
    if code in _AUTH_CODES:
        return TransientSendError(code=f"smtp-{code}", reason=reason)
    if not 500 <= code <= 599:
        # 4yz, or something unexpected (aiosmtplib uses -1 for an unparseable reply): not final.
        return TransientSendError(code=f"smtp-{code}", reason=reason)

    enhanced = _ENHANCED.match(text)
    subject, detail = (enhanced.group(2), enhanced.group(3)) if enhanced else ("", "")
    problem: ContactProblem | None = None
    if stage == "mail":
        pass  # a refused MAIL FROM is about our sender, never the recipient
    elif subject == "1" or (subject, detail) == ("2", "1"):
        # RFC 3463 §3.2/§3.3: X.1.Y is addressing status (bad mailbox, bad domain, bad syntax),
        # X.2.1 is "mailbox disabled, not accepting messages".
        problem = ContactProblem.BOUNCING
    elif subject == "7":
        pass  # X.7.Y security/policy (spam, relay denied): about us or the content, not the address
    elif (stage == "rcpt" and code in _RECIPIENT_CODES) or _NO_SUCH_MAILBOX.search(text):
        # No (or a generic) enhanced code: fall back to the basic code and the wording.
        problem = ContactProblem.BOUNCING
    # Everything else 5yz (552 too large, 554 transaction failed, 5.7.x policy) is final for this
    # message but says nothing about the address.
    return PermanentSendError(code=f"smtp-{code}", reason=reason, problem=problem)


def _session_error(exc: Exception) -> TransientSendError:
    """Map a failure while opening a session (connect, greeting, EHLO, STARTTLS, AUTH).

    None of these depend on the message, so none are permanent for it: even a 5xx here (a greeting
    of "554 no service", EHLO refused, 535 bad credentials) means "fix the server or the config and
    try again", and the message must wait for that rather than be thrown away.
    """
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return TransientSendError(code="timeout", reason=str(exc))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return TransientSendError(code=f"smtp-{exc.code}", reason=f"{exc.code} {exc.message}")
    if isinstance(exc, ssl.SSLError):  # e.g. the server's certificate did not verify
        return TransientSendError(code="tls", reason=str(exc))
    if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError)):
        return TransientSendError(code="connection", reason=str(exc) or type(exc).__name__)
    # SMTPException without a code: STARTTLS or AUTH asked for but not offered by the server.
    return TransientSendError(code="smtp-config", reason=str(exc))


# --------------------------------------------------------------------------------------------------
# The channel
# --------------------------------------------------------------------------------------------------

# Reconnect instead of reusing a connection idle for longer than this. Servers time out idle
# clients (RFC 5321 §4.5.3.2.7 suggests 5 minutes; many use less), and a NAT box may forget the
# flow without telling either side, which would cost a full command timeout to discover.
_MAX_IDLE_SECONDS = 120.0


@dataclass(slots=True)
class _Slot:
    """One pool position: at most one connection, used by at most one send at a time."""

    smtp: aiosmtplib.SMTP | None = None
    last_used: float = field(default_factory=time.monotonic)

    def discard(self) -> None:
        if self.smtp is not None:
            self.smtp.close()  # drops the socket without QUIT: the connection is unusable anyway
            self.smtp = None


class SmtpEmailChannel:
    """The Channel for ChannelKind.EMAIL over SMTP, with up to `pool_size` persistent connections.

    Connections are opened lazily and reused; the pool is LIFO, so light traffic keeps reusing one
    warm connection instead of spreading over (and keeping alive) all of them. `starttls=True`
    requires STARTTLS (RFC 3207) and fails the session if the server does not offer it; False never
    attempts it (aiosmtplib's default of opportunistic TLS would make a dev server with a
    self-signed certificate fail certificate validation).
    """

    kind = ChannelKind.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
        pool_size: int = 4,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout
        self._pool_size = pool_size
        # The EHLO name (RFC 5321 §4.1.1.1: the client's FQDN). aiosmtplib would call
        # socket.getfqdn() on every new SMTP object, which can block on DNS; do it once instead.
        self._local_hostname = local_hostname
        self._tls_context = tls_context
        self._idle: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        for _ in range(pool_size):
            self._idle.put_nowait(_Slot())
        self._closed = False

    async def send(self, item: OutboundItem) -> SendResult:
        """Deliver one e-mail. ValueError (before any network I/O) if the item is unsafe to send."""
        if not isinstance(item, OutboundEmail):
            raise TypeError(f"SmtpEmailChannel sends OutboundEmail, not {type(item).__name__}")
        try:
            message = build_mime(item)
        except ValueError as exc:
            # Header injection, a malformed address: this item can never be sent as it is.
            raise PermanentSendError(code="invalid-message", reason=str(exc)) from exc
        # Envelope = the header addresses, parsed and IDNA-encoded as build_mime did (cached: the
        # e-mail package's header parser is the slowest step of a send). The envelope sender
        # (where bounces go) is the From address.
        sender = _mailbox("From", item.from_).addr_spec
        recipient = _mailbox("To", item.to).addr_spec
        if self._closed:
            raise TransientSendError(code="closed", reason="the SMTP channel is closed")

        slot = await self._idle.get()
        try:
            if self._closed:  # closed while we waited for a slot
                raise TransientSendError(code="closed", reason="the SMTP channel is closed")
            await self._send_on(slot, message, sender, recipient, item.reference)
        except SendError:
            raise  # _send_on already dropped the connection if the error left it unusable
        except BaseException:
            # Cancelled mid-transaction, or something unexpected: the session is in an unknown
            # state (a reply may still be in flight), so never hand it to the next send.
            slot.discard()
            raise
        finally:
            slot.last_used = time.monotonic()
            self._idle.put_nowait(slot)
        return SendResult(provider_id=item.message_id)

    async def _send_on(
        self, slot: _Slot, message: email.message.EmailMessage, sender: str, recipient: str,
        reference: str,
    ) -> None:
        # A pooled connection may have been closed by the server while idle. We usually notice
        # (the EOF marks it disconnected) and simply reconnect, but the close can race our next
        # command, which then fails with SMTPServerDisconnected. One retry on a fresh connection
        # covers that. Caveat (RFC 5321 §4.1.1.4, RFC 1047): if the connection died after the
        # final "." but before the 250, the message may already be delivered; the retry can then
        # duplicate it, exactly as the outbox's later retry of a transient error would.
        for attempt in (1, 2):
            smtp = await self._connection(slot)
            try:
                await smtp.send_message(message, sender=sender, recipients=[recipient])
                return
            except aiosmtplib.SMTPServerDisconnected as exc:
                slot.discard()
                if attempt == 1:
                    log.info("SMTP connection lost (%s); retrying %s on a new one", exc, reference)
                    continue
                raise TransientSendError(code="connection", reason=str(exc)) from exc
            except aiosmtplib.SMTPTimeoutError as exc:
                # No retry: a slow server is not a stale connection, and after a timeout during
                # DATA the message may have been accepted.
                slot.discard()
                raise TransientSendError(code="timeout", reason=str(exc)) from exc
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients[0]
                raise _reply_error(refused.code, refused.message, "rcpt") from exc
            except aiosmtplib.SMTPSenderRefused as exc:
                raise _reply_error(exc.code, exc.message, "mail") from exc
            except aiosmtplib.SMTPDataError as exc:
                raise _reply_error(exc.code, exc.message, "data") from exc
            except aiosmtplib.SMTPResponseException as exc:
                # Any other reply (e.g. an unparseable one): the session is suspect, and we do not
                # know which command it answered, so it must not count against the recipient.
                slot.discard()
                raise _reply_error(exc.code, exc.message, "mail") from exc
            except aiosmtplib.SMTPNotSupported as exc:
                # aiosmtplib needs an extension the server lacks for this particular message.
                raise PermanentSendError(code="smtp-unsupported", reason=str(exc)) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                slot.discard()
                raise TransientSendError(code="connection", reason=str(exc)) from exc

    async def _connection(self, slot: _Slot) -> aiosmtplib.SMTP:
        """The slot's live connection, opening a new one if it has none, is dead or sat idle."""
        smtp = slot.smtp
        if smtp is not None and (
            not smtp.is_connected or time.monotonic() - slot.last_used > _MAX_IDLE_SECONDS
        ):
            # No QUIT for an expired one: if the path is half-open, QUIT would only wait out a
            # timeout, and this send would pay for it. The server copes with a plain close.
            slot.discard()
            smtp = None
        if smtp is not None:
            return smtp

        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
            tls_context=self._tls_context,
        )
        try:
            # connect() does the greeting and, when configured, EHLO + STARTTLS + EHLO + AUTH.
            await smtp.connect()
            # Finish the session setup here (EHLO, falling back to HELO for RFC 821 servers) so
            # that a failure is classified as a session problem, not as a verdict on the message.
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _session_error(exc) from exc
        except BaseException:
            smtp.close()
            raise
        slot.smtp = smtp
        return smtp

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        """Say goodbye politely (RFC 5321 §4.1.1.10), but never let that fail or hang anything."""
        try:
            await asyncio.wait_for(smtp.quit(), timeout=min(self._timeout, 5.0))
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
            pass
        finally:
            smtp.close()

    async def close(self) -> None:
        """QUIT every connection. Waits for sends in flight; later sends get TransientSendError."""
        if self._closed:
            return
        self._closed = True
        # Taking every slot waits for the sends that hold one.
        slots = [await self._idle.get() for _ in range(self._pool_size)]
        await asyncio.gather(*(self._quit(s.smtp) for s in slots if s.smtp is not None))
        for slot in slots:
            slot.smtp = None
            # Put them back so that sends still queued for a slot wake up and see _closed.
            self._idle.put_nowait(slot)
