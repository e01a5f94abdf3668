"""E-mail out over SMTP (aiosmtplib), with a small pool of persistent connections.

Why a pool: opening a connection costs a TCP handshake, the greeting, EHLO and possibly STARTTLS and
AUTH round trips; measured locally a new connection per message halves throughput (STACK.md), and
over a WAN with TLS it is far worse. A connection carries one transaction at a time (RFC 5321 has
no multiplexing), so concurrency comes from having several.

Everything above this module sees only our types: `build_mime` (gateway.channels.email_mime) turns
an `OutboundEmail` into MIME, `send` turns SMTP replies and socket errors into `TransientSendError`
/ `PermanentSendError`.
"""
from __future__ import annotations

import asyncio
import email.message
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib

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
from gateway.channels.email_mime import build_mime, mailbox

log = logging.getLogger(__name__)

__all__ = ["SmtpEmailChannel"]


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
        sender = mailbox("From", item.from_).addr_spec
        recipient = mailbox("To", item.to).addr_spec
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
