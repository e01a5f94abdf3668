"""E-mail in: the IMAP reader (aioimaplib), one per mailbox.

The loop: connect, LOGIN, SELECT, compare UIDVALIDITY with the stored cursor, hand every message with
a UID above the cursor to the sink (UID order, in batches), mark and move what the sink accepted,
advance the cursor, then IDLE (RFC 2177) or poll, and on any failure reconnect with backoff.

Exactly-once in effect, at-least-once on the wire: a message is marked \\Seen, moved and counted in the
cursor only AFTER `await sink(raw)` returned, and the sink commits it to the database (idempotent on
Message-ID) before returning. A crash or a dropped connection between the two re-delivers the message,
and the sink ignores the copy; nothing can be marked without having been committed.

The sink gets the raw RFC 5322 bytes. It must commit before returning and raise when it could not;
the reader then stops that batch at the failing UID (nothing after it is marked or counted) and
retries later, so an outage of the database delays mail without losing any. A `batch_sink` takes a
whole fetched batch and commits it in one transaction (much faster on SQLite); if it raises, none of
the batch is marked and all of it is offered again.
"""
from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aioimaplib
from tortoise import timezone

from gateway.channels.imap_lock import MailboxLock, mailbox_lock
from gateway.channels.imap_protocol import (
    ImapProtocolError,
    parse_fetch,
    parse_search,
    quote_mailbox,
    select_codes,
    uid_set,
)
from gateway.channels.models import ImapCursor
from gateway.settings import ImapSettings

log = logging.getLogger(__name__)
Sink = Callable[[bytes], Awaitable[None]]
BatchSink = Callable[[list[bytes]], Awaitable[None]]  # all of them committed, or raise
T = TypeVar("T")


class ImapError(Exception):
    """The server refused something (NO/BAD) or the connection is gone: reconnect and resume."""


class ConnectionLost(ImapError):
    pass


class LockLost(ImapError):
    """The dedicated database connection holding our advisory lock died; another reader may start."""


class SinkFailed(Exception):
    """The sink raised for this UID; it and everything after it stay unmarked for a later attempt."""

    def __init__(self, uid: int) -> None:
        super().__init__(f"the sink failed on UID {uid}")
        self.uid = uid


@dataclass(eq=False)
class _Connection:
    imap: aioimaplib.IMAP4
    closed: asyncio.Future[Exception | None]  # resolved by aioimaplib's connection-lost callback
    exists: asyncio.Event = field(default_factory=asyncio.Event)  # an untagged "* n EXISTS" arrived
    uidvalidity: int = 0


def _ok(response: Any, what: str) -> Any:
    # aioimaplib does not raise on NO/BAD (STACK.md), so every answer is checked here.
    if response.result != "OK":
        detail = b" ".join(bytes(x) for x in response.lines)[:300].decode(errors="replace")
        raise ImapError(f"{what}: {response.result} {detail}")
    return response


class ImapReader:
    def __init__(
        self, settings: ImapSettings, sink: Sink, *, mailbox: str = "INBOX",
        processed_folder: str | None = "Processed", batch_size: int = 200, idle_timeout: float = 300,
        poll_interval: float = 30, timeout: float = 30, backoff_max: float = 60, use_ssl: bool | None = None,
        max_batch_bytes: int = 16 * 1024 * 1024, lock_retry: float = 5.0, database_url: str | None = None,
        batch_sink: BatchSink | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.batch_sink = batch_sink  # if given, each fetched batch is committed in one go instead
        self.mailbox = mailbox
        self.processed_folder = processed_folder
        self.batch_size = batch_size
        self.idle_timeout = idle_timeout        # RFC 2177: re-issue IDLE well within 29 minutes
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.backoff_max = backoff_max
        self.use_ssl = settings.port == 993 if use_ssl is None else use_ssl
        self.max_batch_bytes = max_batch_bytes  # also cap a batch by size: attachments can be large
        self.lock_retry = lock_retry
        self.database_url = database_url
        self.key = f"{settings.username}@{settings.host}:{settings.port}/{mailbox}"
        self._lock: MailboxLock | None = None
        self._folder_ready = False
        self._last_uid = 0
        self._healthy = False  # the current session drained the mailbox at least once

    @property
    def holds_lock(self) -> bool:
        return self._lock is not None and self._lock.held

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop` is set, surviving dropped connections, server errors and sink failures."""
        self._lock = lock = mailbox_lock(self.key, self.database_url)
        failures = 0
        try:
            while not stop.is_set():
                if not await self._acquire(lock, stop):
                    return
                self._healthy = False
                try:
                    await self._session(lock, stop, forever=True)
                except Exception as exc:  # a reader must outlive any one failure; cancellation still ends it
                    failures = 1 if self._healthy else failures + 1
                    # Exponential backoff with jitter: reconnecting readers do not stampede the server.
                    delay = min(self.backoff_max, 0.5 * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
                    if isinstance(exc, SinkFailed):
                        log.error("IMAP %s: %s; retrying in %.1fs", self.key, exc, delay, exc_info=exc.__cause__)
                    else:
                        log.warning("IMAP %s: %s: %s; reconnecting in %.1fs", self.key, type(exc).__name__, exc, delay)
                    await _wait_any([stop.wait()], delay)
        finally:
            await lock.release()

    async def run_once(self) -> int:
        """Connect, hand everything new to the sink, disconnect; returns how many the sink accepted.

        Waits while another reader holds the mailbox's lock; a sink failure is raised as SinkFailed
        (after marking what the sink had accepted before it), a connection failure as it came."""
        self._lock = lock = mailbox_lock(self.key, self.database_url)
        never = asyncio.Event()
        try:
            await self._acquire(lock, never)
            return await self._session(lock, never, forever=False)
        finally:
            await lock.release()

    async def _acquire(self, lock: MailboxLock, stop: asyncio.Event) -> bool:
        waiting = False
        while not stop.is_set():
            try:
                if await lock.try_acquire():
                    return True
                if not waiting:
                    log.info("IMAP %s: another process is reading this mailbox; waiting", self.key)
                    waiting = True
            except Exception as exc:  # noqa: BLE001 (the database may be restarting: keep trying)
                log.warning("IMAP %s: cannot take the reader lock: %s: %s", self.key, type(exc).__name__, exc)
            await _wait_any([stop.wait()], self.lock_retry)
        return False

    async def _session(self, lock: MailboxLock, stop: asyncio.Event, *, forever: bool) -> int:
        conn = await self._connect()
        graceful = False
        try:
            await self._load_cursor(conn)
            total = 0
            while True:
                total += await self._drain(conn, lock, stop)
                self._healthy = True
                if not forever or stop.is_set():
                    graceful = True
                    return total
                await self._wait_for_mail(conn, lock, stop)
        finally:
            await self._close(conn, graceful)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[Exception | None] = loop.create_future()

        def lost(exc: Exception | None) -> None:
            if not closed.done():
                closed.set_result(exc)

        context = ssl.create_default_context() if self.use_ssl else None
        imap = aioimaplib.IMAP4(self.settings.host, self.settings.port, timeout=self.timeout,
                                conn_lost_cb=lost, ssl_context=context)
        conn = _Connection(imap, closed)
        # aioimaplib drops untagged EXISTS that arrive during a non-IDLE command ("ignored untagged
        # response"). We need them: a message that lands during our last SEARCH is reported only then
        # (RFC 3501 7.3.1) and not again in IDLE, so it would wait for the next idle_timeout.
        original = imap.protocol._untagged_response

        def untagged(line: bytes) -> Any:
            if line.endswith(b" EXISTS"):
                conn.exists.set()
            return original(line)

        imap.protocol._untagged_response = untagged  # type: ignore[method-assign]
        try:
            await self._call(conn, imap.wait_hello_from_server())
            _ok(await self._call(conn, imap.login(self.settings.username, self.settings.password)), "LOGIN")
            if self.processed_folder and not self._folder_ready:
                await self._ensure_folder(conn, self.processed_folder)
            selected = _ok(await self._call(conn, imap.select(quote_mailbox(self.mailbox))), "SELECT")
        except BaseException:
            await self._close(conn, graceful=False)
            raise
        uidvalidity, _ = select_codes(selected.lines)
        if uidvalidity is None:  # RFC 3501 6.3.1 makes it mandatory; without it UIDs cannot be trusted
            await self._close(conn, graceful=False)
            raise ImapProtocolError("SELECT did not report UIDVALIDITY")
        conn.uidvalidity = uidvalidity
        return conn

    async def _ensure_folder(self, conn: _Connection, name: str) -> None:
        listed = _ok(await self._call(conn, conn.imap.list('""', quote_mailbox(name))), "LIST")
        if len(listed.lines) < 2:  # only the tagged completion: the folder does not exist
            created = await self._call(conn, conn.imap.create(quote_mailbox(name)))
            if created.result != "OK" and b"ALREADYEXISTS" not in b" ".join(bytes(x) for x in created.lines):
                _ok(created, f"CREATE {name}")
        self._folder_ready = True

    async def _load_cursor(self, conn: _Connection) -> None:
        cursor, created = await ImapCursor.get_or_create(
            mailbox=self.key, defaults={"uidvalidity": conn.uidvalidity, "last_uid": 0})
        if not created and cursor.uidvalidity != conn.uidvalidity:
            # A new UIDVALIDITY (RFC 3501 2.3.1.1: the mailbox was recreated or the server migrated)
            # means the stored UID names nothing any more. We start again from the first message and
            # re-deliver everything still in the mailbox, \Seen or not: the sink ignores what it has
            # already committed (Message-ID), while skipping \Seen mail would lose messages a person
            # opened in webmail before we read them. Re-delivering is safe, losing is not.
            log.warning("IMAP %s: UIDVALIDITY changed from %s to %s; re-reading the whole mailbox",
                        self.key, cursor.uidvalidity, conn.uidvalidity)
            await ImapCursor.filter(id=cursor.id).update(
                uidvalidity=conn.uidvalidity, last_uid=0, updated_at=timezone.now())
            cursor.last_uid = 0
        self._last_uid = cursor.last_uid

    async def _drain(self, conn: _Connection, lock: MailboxLock, stop: asyncio.Event) -> int:
        """Deliver every message above the cursor; returns how many the sink accepted."""
        total = 0
        while not stop.is_set():
            if lock.lost.is_set():
                raise LockLost("the reader lock's database connection died")
            conn.exists.clear()
            # "UID n:*" also matches the highest UID when n is above it (RFC 3501 6.4.8), hence the filter.
            found = _ok(await self._call(conn, conn.imap.uid_search("UID", f"{self._last_uid + 1}:*", charset=None)),
                        "UID SEARCH")
            uids = sorted(uid for uid in parse_search(found.lines) if uid > self._last_uid)
            if not uids:
                if conn.exists.is_set():
                    continue  # mail arrived while we searched: look again before idling
                return total
            for start in range(0, len(uids), self.batch_size):
                for batch in await self._plan(conn, uids[start:start + self.batch_size]):
                    total += await self._deliver(conn, batch, stop)
                    if stop.is_set():
                        return total
        return total

    async def _plan(self, conn: _Connection, chunk: list[int]) -> list[list[int]]:
        """Split a chunk of UIDs into batches of at most max_batch_bytes, using RFC822.SIZE."""
        answer = _ok(await self._call(conn, conn.imap.uid("fetch", uid_set(chunk), "(UID RFC822.SIZE)"), None),
                     "UID FETCH sizes")
        wanted = set(chunk)
        sizes = {item.uid: item.size or 0 for item in parse_fetch(answer.lines) if item.uid in wanted}
        batches: list[list[int]] = []
        current: list[int] = []
        current_bytes = 0
        for uid in chunk:
            if uid not in sizes:
                continue  # expunged by another client since the SEARCH: nothing to deliver
            if current and current_bytes + sizes[uid] > self.max_batch_bytes:
                batches.append(current)
                current, current_bytes = [], 0
            current.append(uid)
            current_bytes += sizes[uid]
        if current:
            batches.append(current)
        return batches

    async def _deliver(self, conn: _Connection, batch: list[int], stop: asyncio.Event) -> int:
        # One UID FETCH per batch, not one round trip per message. BODY.PEEK[] leaves \Seen alone
        # (RFC 3501 6.4.5): a message is marked only once the sink has committed it.
        answer = _ok(await self._call(conn, conn.imap.uid("fetch", uid_set(batch), "(UID BODY.PEEK[])"), None),
                     "UID FETCH")
        wanted = set(batch)
        bodies: dict[int, bytes | None] = {}
        for item in parse_fetch(answer.lines):
            if item.uid in wanted and bodies.get(item.uid) is None:
                bodies[item.uid] = item.body
        delivered: list[int] = []
        failure: tuple[int, Exception] | None = None
        if self.batch_sink is not None and not stop.is_set():
            present = [uid for uid in batch if uid in bodies]
            if any(bodies[uid] is None for uid in present):
                raise ImapProtocolError("a FETCH answer carried no BODY[] literal")
            try:
                await self.batch_sink([bodies[uid] for uid in present])  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 (all or nothing: the batch is offered again)
                raise SinkFailed(present[0]) from exc
            if present:
                await self._finish(conn, present)
            return len(present)
        for uid in batch:
            if uid not in bodies:
                continue  # expunged meanwhile: the server answers only for UIDs that exist
            raw = bodies[uid]
            if raw is None:
                raise ImapProtocolError(f"FETCH for UID {uid} carried no BODY[] literal")
            if stop.is_set():
                break
            try:
                await self.sink(raw)
            except Exception as exc:  # noqa: BLE001 (the sink's failure is reported by SinkFailed)
                failure = (uid, exc)
                break
            delivered.append(uid)
        if delivered:
            await self._finish(conn, delivered)
        if failure is not None:
            raise SinkFailed(failure[0]) from failure[1]
        return len(delivered)

    async def _finish(self, conn: _Connection, uids: list[int]) -> None:
        """Mark, move, then advance the cursor. Every message here is already committed by the sink,
        so a NO from the server only leaves mail in the INBOX (logged); a lost connection raises and
        the batch is re-delivered to the idempotent sink after reconnecting."""
        imap, uids_text = conn.imap, uid_set(uids)
        marked = await self._call(conn, imap.uid("store", uids_text, "+FLAGS.SILENT", r"(\Seen)"))
        self._warn_unless_ok(marked, "UID STORE \\Seen")
        if self.processed_folder:
            folder = quote_mailbox(self.processed_folder)
            if imap.has_capability("MOVE"):  # RFC 6851: atomic, keeps the flags, expunges only these UIDs
                moved = await self._call(conn, imap.uid("move", uids_text, folder))
            else:  # RFC 3501 COPY + \Deleted, then UID EXPUNGE (RFC 4315) so nobody else's \Deleted goes
                moved = await self._call(conn, imap.uid("copy", uids_text, folder))
                if moved.result == "OK":
                    await self._call(conn, imap.uid("store", uids_text, "+FLAGS.SILENT", r"(\Deleted)"))
                    if imap.has_capability("UIDPLUS"):
                        await self._call(conn, imap.uid("expunge", uids_text))
                    # Without UIDPLUS a plain EXPUNGE would also remove mail someone else flagged
                    # \Deleted that we may not have read yet; the \Deleted copies wait instead.
            if not self._warn_unless_ok(moved, f"moving to {self.processed_folder}"):
                self._folder_ready = False  # recreate it on the next connection ([TRYCREATE])
        last = max(uids)
        # Only forward, and only for this UIDVALIDITY: a late writer can never move the cursor back.
        await ImapCursor.filter(mailbox=self.key, uidvalidity=conn.uidvalidity, last_uid__lt=last).update(
            last_uid=last, updated_at=timezone.now())
        self._last_uid = max(self._last_uid, last)

    def _warn_unless_ok(self, response: Any, what: str) -> bool:
        if response.result == "OK":
            return True
        log.warning("IMAP %s: %s failed: %s %s", self.key, what, response.result, response.lines[-1:])
        return False

    async def _wait_for_mail(self, conn: _Connection, lock: MailboxLock, stop: asyncio.Event) -> None:
        if conn.exists.is_set():
            return
        wakers: list[Coroutine[Any, Any, Any]] = [conn.exists.wait(), stop.wait(), lock.lost.wait()]
        if not conn.imap.has_capability("IDLE"):
            await _wait_any(wakers, self.poll_interval, conn.closed)  # polling fallback: drain again
        else:
            # RFC 2177: the server pushes "* n EXISTS" while we IDLE; DONE ends it. aioimaplib's own
            # timer only pushes a sentinel into its queue, so ours decides when to stop.
            idle = await self._call(conn, conn.imap.idle_start(timeout=self.idle_timeout + 3600))
            await _wait_any(wakers, self.idle_timeout, conn.closed)
            if conn.closed.done():
                raise ConnectionLost(f"connection lost while idling: {conn.closed.result()}")
            conn.imap.idle_done()
            _ok(await self._call(conn, asyncio.wait_for(idle, self.timeout)), "IDLE")
            queue = conn.imap.protocol.idle_queue  # pushes we did not read: drop them, or they pile up
            while not queue.empty():
                queue.get_nowait()
        if conn.closed.done():
            raise ConnectionLost(f"connection lost: {conn.closed.result()}")

    async def _call(self, conn: _Connection, awaitable: Awaitable[T], timeout: float | None = -1.0) -> T:
        """Await one command, but fail at once when the connection drops.

        aioimaplib does not fail pending commands when the socket closes: a FETCH cut in the middle
        of a literal would wait for its timeout. `timeout=None` leaves it to aioimaplib's inactivity
        timer (FETCH, whose total time grows with the batch); the default is self.timeout, which
        aioimaplib does not apply to UID STORE/COPY/MOVE/EXPUNGE itself.
        """
        task = asyncio.ensure_future(awaitable)
        limit = self.timeout if timeout == -1.0 else timeout
        try:
            done, _ = await asyncio.wait({task, conn.closed}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        if conn.closed.done():
            raise ConnectionLost(f"connection lost: {conn.closed.result() or 'closed by the server'}")
        raise TimeoutError(f"no answer within {limit}s")

    async def _close(self, conn: _Connection, graceful: bool) -> None:
        if graceful and not conn.closed.done():
            try:
                await self._call(conn, conn.imap.logout(), timeout=min(self.timeout, 5))
            except Exception as exc:  # noqa: BLE001 (closing anyway)
                log.debug("IMAP %s: LOGOUT failed: %s", self.key, exc)
        connecting = getattr(conn.imap, "_client_task", None)  # cancelled while still connecting
        if connecting is not None and not connecting.done():
            connecting.cancel()
        transport = conn.imap.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        for task in list(conn.imap.tasks) + list(conn.imap.protocol.tasks):
            task.cancel()


async def _wait_any(waiters: list[Coroutine[Any, Any, Any]], timeout: float,
                    *futures: asyncio.Future[Any]) -> None:
    """Return when any waiter or future finishes or `timeout` passes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waiters]
    try:
        await asyncio.wait([*tasks, *futures], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
