"""A recording SMTP server for tests, built on aiosmtpd.

aiosmtpd's `Controller` runs the server on its own event loop in a daemon thread, so the code under
test talks to it over real TCP, exactly as it would talk to Postfix. Everything the handler touches
is therefore shared between two threads and guarded by one lock.

Usage::

    from tests.fakes.smtp import FakeSmtp, fake_smtp  # noqa: F401

    async def test_x(fake_smtp: FakeSmtp) -> None:
        channel = SmtpEmailChannel(fake_smtp.host, fake_smtp.port)
        ...
        assert fake_smtp.received[0].message["Subject"] == "Hola"

Scripting failures (each rule is consumed by the next matching command, on any connection):

- ``fail_next(451, "4.3.0 try later", stage="rcpt")`` answers the next RCPT with that reply;
- ``delay(1.0, stage="data")`` sleeps before answering the next DATA (to trigger client timeouts);
- ``drop_next(stage="mail")`` closes the TCP connection instead of answering the next MAIL;
- ``drop_idle()`` closes every open connection now, like a server's idle timeout
  (RFC 5321 §4.5.3.2.7).

`connections` counts TCP connections that said EHLO/HELO, so tests can assert reuse. Note that an
8bit body parsed from the wire keeps its CRLF line ends (``get_content()`` returns "\r\n").
"""
from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def _not_login_data_deprecation(record: logging.LogRecord) -> bool:
    # aiosmtpd 1.4.6's own smtp_AUTH sets the deprecated Session.login_data after every successful
    # AUTH, and that property logs a warning each time. It is not our code's doing and cannot be
    # avoided through the public API, so keep it out of test output.
    return "Session.login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_not_login_data_deprecation)

Stage = Literal["mail", "rcpt", "data"]
_STAGES: tuple[Stage, ...] = ("mail", "rcpt", "data")


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message the server accepted (a 250 after DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: email.message.EmailMessage  # parsed with email.policy.default
    raw: bytes                           # exactly what came after DATA, dot-unstuffed
    peer: tuple[str, int]                # client address: one per TCP connection
    tls: bool                            # the session had done STARTTLS
    login: str | None                    # the AUTH user name, if the client logged in
    mail_options: tuple[str, ...] = ()   # e.g. ("SIZE=123", "BODY=8BITMIME")


@dataclass(slots=True)
class _Rule:
    kind: Literal["fail", "delay", "drop"]
    remaining: int
    code: int = 0
    text: str = ""
    seconds: float = 0.0


class _Handler:
    """aiosmtpd handler: its hooks run on the server thread, one command at a time per connection."""

    def __init__(self, fake: FakeSmtp) -> None:
        self._fake = fake

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        # The 5-argument hook replaces aiosmtpd's own bookkeeping, so set host_name ourselves
        # (without it MAIL is refused with "503 send HELO first").
        session.host_name = hostname
        self._fake._note_connection(server, session)
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        self._fake._note_connection(server, session)
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._fake._auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"  # RFC 4954 §6
        scripted = await self._fake._apply_rules("mail", server)
        if scripted is not None:
            return scripted
        # Returning a status means aiosmtpd no longer records the envelope for us.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        scripted = await self._fake._apply_rules("rcpt", server)
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        scripted = await self._fake._apply_rules("data", server)
        if scripted is not None:
            return scripted
        raw = envelope.content
        assert isinstance(raw, bytes)  # decode_data=False (the default) keeps bytes
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        # session.auth_data holds what our authenticator returned (session.login_data is deprecated).
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self._fake._record(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=parsed,
                raw=raw,
                peer=_peer(session),
                tls=session.ssl is not None,
                login=login,
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 OK queued"


class FakeSmtp:
    """A real SMTP server on 127.0.0.1 that records what it receives and fails on request.

    `auth=("user", "pw")` makes AUTH mandatory before MAIL (offered over plain TCP too, so login can
    be tested without TLS); `tls_context` (a server-side context) enables STARTTLS.
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._auth = auth
        self._tls_context = tls_context
        self._require_starttls = require_starttls
        self._lock = threading.Lock()
        self._received: list[ReceivedMessage] = []
        self._peers: list[tuple[str, int]] = []
        self._servers: set[SMTP] = set()
        self._rules: dict[Stage, list[_Rule]] = {stage: [] for stage in _STAGES}
        self._controller: Controller | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeSmtp:
        # Controller(port=0) fails its own readiness check, so ask the OS for a free port first.
        # Another process could grab it in between; retry a few times rather than flake.
        last_error: Exception | None = None
        for _ in range(5):
            port = _free_port(self.host)
            kwargs: dict[str, Any] = {}
            if self._auth is not None:
                # AUTH is offered over plain TCP too, so login can be tested without TLS. It is
                # enforced in handle_MAIL rather than with auth_required=True, which (with
                # auth_require_tls=False) makes aiosmtpd warn on every connection.
                kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
            if self._tls_context is not None:
                kwargs.update(tls_context=self._tls_context, require_starttls=self._require_starttls)
            controller = Controller(_Handler(self), hostname=self.host, port=port, **kwargs)
            try:
                controller.start()
            except OSError as exc:  # EADDRINUSE: lost the race for the port
                last_error = exc
                controller.stop(no_assert=True)
                continue
            self._controller, self.port = controller, port
            return self
        raise RuntimeError(f"could not start the fake SMTP server: {last_error}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> FakeSmtp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what the tests read ---------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMessage]:
        """A snapshot (a new list) of every accepted message, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """How many TCP connections greeted us with EHLO/HELO (the readiness probe never does)."""
        with self._lock:
            return len(self._peers)

    # -- scripting -------------------------------------------------------------------------------

    def fail_next(self, code: int, message: str, *, times: int = 1, stage: Stage = "rcpt") -> None:
        """Answer the next `times` commands of `stage` with `code message` instead of accepting."""
        self._add_rule(stage, _Rule("fail", times, code=code, text=message))

    def delay(self, seconds: float, *, stage: Stage = "data", times: int = 1) -> None:
        """Sleep `seconds` before answering the next `times` commands of `stage` (then accept)."""
        self._add_rule(stage, _Rule("delay", times, seconds=seconds))

    def drop_next(self, *, stage: Stage = "mail", times: int = 1) -> None:
        """Close the TCP connection, without a reply, on the next `times` commands of `stage`."""
        self._add_rule(stage, _Rule("drop", times))

    def drop_idle(self) -> None:
        """Close every connection now (call it between sends), and wait until that happened."""
        controller = self._controller
        assert controller is not None, "server not started"

        done = threading.Event()

        def close_all() -> None:  # runs on the server's loop, which owns the transports
            with self._lock:
                servers = list(self._servers)
            for server in servers:
                if server.transport is not None:
                    server.transport.close()
            done.set()

        # Blocking the caller's loop for a moment is fine: the server runs on its own thread.
        controller.loop.call_soon_threadsafe(close_all)
        if not done.wait(5):
            raise TimeoutError("the fake SMTP server did not close its connections")

    # -- called from the server thread -----------------------------------------------------------

    def _add_rule(self, stage: Stage, rule: _Rule) -> None:
        if stage not in _STAGES:
            raise ValueError(f"stage must be one of {_STAGES}, not {stage!r}")
        if rule.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._rules[stage].append(rule)

    def _take_rule(self, stage: Stage) -> _Rule | None:
        with self._lock:
            rules = self._rules[stage]
            if not rules:
                return None
            rule = rules[0]
            rule.remaining -= 1
            if rule.remaining == 0:
                rules.pop(0)
            return rule

    async def _apply_rules(self, stage: Stage, server: SMTP) -> str | None:
        """Return a scripted reply, or None to accept normally (after any scripted delay)."""
        rule = self._take_rule(stage)
        if rule is None:
            return None
        if rule.kind == "fail":
            return f"{rule.code} {rule.text}"
        if rule.kind == "delay":
            await asyncio.sleep(rule.seconds)
            return None
        # "drop": close the socket and never answer. Closing makes aiosmtpd's connection_lost()
        # cancel the task running this hook, so the sleep ends in a clean CancelledError rather
        # than in a write to a dead transport.
        assert server.transport is not None
        server.transport.close()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable: the closed connection cancels this hook")

    def _note_connection(self, server: SMTP, session: Session) -> None:
        with self._lock:
            self._servers.add(server)
            peer = _peer(session)
            # After STARTTLS the client says EHLO again on the same socket: count the socket once.
            if peer not in self._peers:
                self._peers.append(peer)

    def _record(self, item: ReceivedMessage) -> None:
        with self._lock:
            self._received.append(item)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self._auth is not None
        if isinstance(auth_data, LoginPassword):
            user, password = self._auth
            if auth_data.login == user.encode() and auth_data.password == password.encode():
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


def _peer(session: Session) -> tuple[str, int]:
    # aiosmtpd types Session.peer loosely; for a TCP server it is the (host, port) pair.
    peer: Any = session.peer
    return str(peer[0]), int(peer[1])


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def fake_smtp() -> Iterator[FakeSmtp]:
    """A started FakeSmtp, stopped after the test."""
    with FakeSmtp() as server:
        yield server
