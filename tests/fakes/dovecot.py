"""A throwaway Dovecot IMAP server for tests and benchmarks, and a proxy that can cut connections.

The server follows STACK.md's verified recipe ("Email in: throwaway Dovecot"): a template config in a
`tempfile.mkdtemp()` directory (not pytest's tmp_path: as root its parent is 0700 and the login
fails), run in the foreground, as the `dovecot` user when we are root. One server serves the whole
session; each test takes a fresh user (`new_mailbox()`), so tests never see each other's mail.
The users are all written before the start: Dovecot re-reads a changed passwd-file only when its
mtime changes, so a user added in the same second as the previous one failed to log in.

    from tests.fakes.dovecot import cutting_proxy, dovecot  # noqa: F401

    async def test_x(dovecot) -> None:
        require(dovecot)
        box = dovecot.new_mailbox()
        await box.append([make_reply(1)])
        reader = ImapReader(box.settings, sink)
        ...
        assert [m.uid for m in await box.list("Processed")] == [1]

Without a `dovecot` binary the fixture yields an UnavailableService reason, so `require(dovecot)`
skips locally and fails in CI. `start_dovecot`, `make_reply` and the Mailbox helpers are plain
functions and classes so benchmarks/imap_ingest.py can reuse them outside pytest.
"""
from __future__ import annotations

import asyncio
import email.utils
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioimaplib
import pytest

from gateway.channels.imap_protocol import parse_fetch, quote_mailbox
from gateway.settings import ImapSettings

if TYPE_CHECKING:
    from tests.conftest import UnavailableService

TEMPLATE = Path(__file__).with_name("dovecot.conf.tmpl")
POOL = 400  # users written at start, handed out by new_mailbox()


@dataclass(frozen=True, slots=True)
class StoredMessage:
    uid: int
    flags: frozenset[str]
    raw: bytes

    @property
    def message_id(self) -> str:
        match = re.search(rb"^Message-ID:\s*(<[^>]+>)", self.raw, re.MULTILINE | re.IGNORECASE)
        return match.group(1).decode() if match else ""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One Dovecot user, with helpers that talk to the server over a separate IMAP connection."""

    host: str
    port: int
    user: str
    password: str

    @property
    def settings(self) -> ImapSettings:
        return ImapSettings(self.host, self.port, self.user, self.password)

    async def connect(self) -> aioimaplib.IMAP4:
        imap = aioimaplib.IMAP4(host=self.host, port=self.port, timeout=10)
        await imap.wait_hello_from_server()
        response = await imap.login(self.user, self.password)
        assert response.result == "OK", response
        return imap

    async def append(self, messages: Iterable[bytes], mailbox: str = "INBOX", flags: str | None = None) -> list[int]:
        """APPEND each message; returns the UIDs the server gave them (RFC 4315 APPENDUID)."""
        imap = await self.connect()
        uids: list[int] = []
        try:
            await self._ensure(imap, mailbox)
            for raw in messages:
                response = await imap.append(raw, mailbox=quote_mailbox(mailbox), flags=flags)
                assert response.result == "OK", response
                match = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(bytes(x) for x in response.lines))
                uids.append(int(match.group(1)) if match else 0)
        finally:
            await imap.logout()
        return uids

    async def list(self, mailbox: str = "INBOX") -> list[StoredMessage]:
        """Every message in a folder with its UID and flags (BODY.PEEK leaves \\Seen alone)."""
        imap = await self.connect()
        try:
            response = await imap.select(quote_mailbox(mailbox))  # aioimaplib cannot UID FETCH after EXAMINE
            if response.result != "OK":
                return []
            fetched = await imap.uid("fetch", "1:*", "(UID FLAGS BODY.PEEK[])")
            assert fetched.result == "OK", fetched
            out = []
            for item in parse_fetch(fetched.lines):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item.attributes)
                names = frozenset(flags.group(1).decode().split()) if flags else frozenset()
                out.append(StoredMessage(item.uid, names, item.body))
            return sorted(out, key=lambda m: m.uid)
        finally:
            await imap.logout()

    async def uidvalidity(self, mailbox: str = "INBOX") -> int:
        imap = await self.connect()
        try:
            response = await imap.status(quote_mailbox(mailbox), "(UIDVALIDITY)")
            match = re.search(rb"UIDVALIDITY (\d+)", b" ".join(bytes(x) for x in response.lines))
            assert match, response
            return int(match.group(1))
        finally:
            await imap.logout()

    async def recreate(self, mailbox: str) -> None:
        """DELETE and CREATE a folder: the server must give it a new UIDVALIDITY (RFC 3501 2.3.1.1)."""
        imap = await self.connect()
        try:
            await imap.delete(quote_mailbox(mailbox))
            response = await imap.create(quote_mailbox(mailbox))
            assert response.result == "OK", response
        finally:
            await imap.logout()

    @staticmethod
    async def _ensure(imap: aioimaplib.IMAP4, mailbox: str) -> None:
        if mailbox.upper() != "INBOX":
            await imap.create(quote_mailbox(mailbox))  # NO [ALREADYEXISTS] is fine


@dataclass
class DovecotServer:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    owner: tuple[str, str]
    host: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=dict)

    spare: list[str] = field(default_factory=list)  # pre-created users nobody has taken yet

    def new_mailbox(self) -> Mailbox:
        """A fresh user with an empty INBOX (one per test keeps tests independent)."""
        if not self.spare:
            raise RuntimeError(f"all {POOL} pre-created Dovecot users are taken; raise POOL")
        return self.mailbox(self.spare.pop(0))

    def mailbox(self, user: str) -> Mailbox:
        return Mailbox(self.host, self.port, user, self.users[user])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def dovecot_unavailable() -> str | None:
    if shutil.which("dovecot") is None and not Path("/usr/sbin/dovecot").exists():
        return "dovecot is not installed (apt-get install dovecot-imapd)"
    return None


def start_dovecot(users: dict[str, str] | None = None) -> DovecotServer:
    """Start Dovecot in the foreground on a free port; returns once it greets (STACK.md recipe)."""
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    directory = Path(tempfile.mkdtemp(prefix="dovecot-"))
    # As root the services must run as a non-root user: the package's `dovecot` user.
    pw = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    owner = (pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for sub in ("run", "state", "mail"):
        (directory / sub).mkdir()
    users = dict(users or {})
    spare = [f"user{n}" for n in range(1, POOL + 1)]
    users.update({name: f"{name}-secret" for name in spare})
    (directory / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
    for path in (directory, directory / "mail", directory / "users"):
        shutil.chown(path, *owner)
    conf = TEMPLATE.read_text()
    for key, value in {"@DIR@": directory, "@PORT@": port, "@USER@": owner[0], "@GROUP@": owner[1]}.items():
        conf = conf.replace(key, str(value))
    (directory / "dovecot.conf").write_text(conf)
    process = subprocess.Popen([binary, "-F", "-c", str(directory / "dovecot.conf")])
    server = DovecotServer(directory, port, process, owner, users=users, spare=spare)
    deadline = time.monotonic() + 10
    while True:  # ready when the greeting arrives (about 0.06 s)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(64).startswith(b"* OK"):
                    break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                server.stop()
                raise RuntimeError(f"dovecot did not start; see {directory}/dovecot.log")
            time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer | UnavailableService]:
    """The session's Dovecot, or the reason it is missing (tests call `require(dovecot)`)."""
    # Imported here, not at the top, so that benchmarks can use this module without the app.
    from tests.conftest import UnavailableService

    missing = dovecot_unavailable()
    if missing:
        yield UnavailableService(missing)
        return
    server = start_dovecot({"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"})
    try:
        yield server
    finally:
        server.stop()


def make_reply(i: int, *, domain: str = "family.example", size: int = 0) -> bytes:
    """A realistic small reply from a guardian (about 1 KB), with a unique Message-ID."""
    body = (
        f"Thanks, Ms. Rivera! Lucia will bring the permission slip tomorrow ({i}).\r\n"
        "\r\n"
        "Sent from my phone\r\n"
        "\r\n"
        f"On Mon, 2 Sep 2024 at 08:{i % 60:02d}, Ms. Rivera <reply+tok{i:06d}@reply.school.test> wrote:\r\n"
        "> Please remember the field trip form.\r\n"
        "> Thank you!\r\n"
    )
    body += "".join(f"> filler line {n} to make the message bigger\r\n" for n in range(size // 45))
    headers = (
        f"Return-Path: <guardian{i}@{domain}>\r\n"
        f"Delivered-To: reply+tok{i:06d}@reply.school.test\r\n"
        f"From: Guardian {i} <guardian{i}@{domain}>\r\n"
        f"To: Ms. Rivera <reply+tok{i:06d}@reply.school.test>\r\n"
        f"Subject: Re: Field trip on Friday\r\n"
        f"Date: {email.utils.formatdate(1725264000 + i)}\r\n"
        f"Message-ID: <reply-{i}-{os.getpid()}@{domain}>\r\n"
        f"In-Reply-To: <msg-{i}@reply.school.test>\r\n"
        f"References: <msg-{i}@reply.school.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
    )
    return (headers + "\r\n" + body).encode()


class CuttingProxy:
    """A TCP proxy in front of Dovecot that can kill its connections in the middle of a response.

    `cut_after(n, trigger=b" BODY[] {", skip=0)` queues a one-shot cut: at the (skip+1)-th time the
    server's bytes contain `trigger` (counted across connections from the moment the cut is armed),
    only `n` more bytes are passed on, then both sides are aborted: the client sees its socket close
    in the middle of, say, a FETCH literal. Queued cuts arm one after the other. `cut_all()` aborts
    every connection now. The proxy keeps listening, so a reconnect works.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._queued: list[list[Any]] = []  # [skip, n, trigger], the first one is armed

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def settings_for(self, mailbox: Mailbox) -> ImapSettings:
        return ImapSettings(self.host, self.port, mailbox.user, mailbox.password)

    def cut_after(self, n: int, trigger: bytes = b" BODY[] {", skip: int = 0) -> None:
        self._queued.append([skip, n, trigger])

    def cut_all(self) -> None:
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        upstream = asyncio.ensure_future(self._pipe(client_reader, server_writer, watch=False))
        downstream = asyncio.ensure_future(self._pipe(server_reader, client_writer, watch=True))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    def _cut_position(self, tail: bytes, data: bytes) -> int | None:
        """Where in `data` the armed cut falls, if its trigger shows up in it."""
        if not self._queued:
            return None
        armed = self._queued[0]
        skip, n, trigger = armed
        buffer = tail + data  # tail is shorter than trigger: a match here was never counted before
        at = buffer.find(trigger)
        while at >= 0:
            if skip == 0:
                self._queued.pop(0)
                return max(0, at + len(trigger) - len(tail)) + n
            skip -= 1
            at = buffer.find(trigger, at + 1)
        armed[0] = skip
        return None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool) -> None:
        remaining: int | None = None  # bytes still to pass before the cut
        tail = b""
        while data := await reader.read(65536):
            if watch and remaining is None:
                remaining = self._cut_position(tail, data)
                keep = len(self._queued[0][2]) - 1 if self._queued else 0
                tail = (tail + data)[-keep:] if keep else b""
            if remaining is not None:
                writer.write(data[:remaining])
                await writer.drain()
                if len(data) >= remaining:
                    self.cuts += 1
                    return  # the caller aborts both sides
                remaining -= len(data)
                continue
            writer.write(data)
            await writer.drain()


@pytest.fixture
async def cutting_proxy(dovecot: DovecotServer | UnavailableService) -> AsyncIterator[CuttingProxy]:
    from tests.conftest import require

    require(dovecot)
    assert isinstance(dovecot, DovecotServer)
    proxy = CuttingProxy(dovecot.host, dovecot.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
