"""The IMAP reader against a real Dovecot, on SQLite and PostgreSQL (the cursor and the lock live there).

Every test takes a fresh Dovecot user, so mailboxes never leak between tests. Timeouts are short so
the whole file runs in seconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

import asyncpg
import pytest
from tortoise.exceptions import IntegrityError

from gateway.channels.email_imap import ImapReader, SinkFailed
from gateway.channels.imap_lock import lock_key
from gateway.channels.imap_protocol import (
    encode_mailbox,
    parse_fetch,
    parse_search,
    quote_mailbox,
    uid_set,
)
from gateway.channels.models import ImapCursor
from gateway.db import dialect
from gateway.threads.models import InboundEvent
from tests.conftest import require
from tests.fakes.dovecot import CuttingProxy, DovecotServer, make_reply

SEEN = "\\Seen"


def message_id(raw: bytes) -> str:
    match = re.search(rb"^Message-ID:\s*(<[^>]+>)", raw, re.MULTILINE | re.IGNORECASE)
    assert match, raw[:200]
    return match.group(1).decode()


class Recorder:
    """A sink that remembers what it accepted; `fail` decides per Message-ID whether to raise."""

    def __init__(self, fail: Callable[[str], bool] = lambda _mid: False) -> None:
        self.raws: list[bytes] = []
        self.fail = fail

    async def __call__(self, raw: bytes) -> None:
        if self.fail(message_id(raw)):
            raise RuntimeError("database unavailable")
        self.raws.append(raw)

    @property
    def ids(self) -> list[str]:
        return [message_id(raw) for raw in self.raws]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Wait until `condition()` holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def running(reader: ImapReader):
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
def server(dovecot: DovecotServer) -> DovecotServer:
    require(dovecot)
    return dovecot


# --- Against Dovecot --------------------------------------------------------------------------------

async def test_new_mail_reaches_the_sink_once_in_uid_order_then_is_seen_and_moved(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    # One message carries lines that look like IMAP protocol; it must arrive byte for byte.
    tricky = make_reply(3).replace(b"Sent from my phone", b"* 3 FETCH (UID 99 BODY[] {5}\r\n)\r\nA001 OK done\r\n* 9 EXISTS")
    messages = [make_reply(1), make_reply(2), tricky] + [make_reply(i) for i in range(4, 8)]
    uids = await box.append(messages)
    sink = Recorder()
    reader = ImapReader(box.settings, sink, batch_size=3)

    assert await reader.run_once() == 7

    assert sink.raws == messages
    assert await box.list("INBOX") == []
    processed = await box.list("Processed")
    assert [m.message_id for m in processed] == sink.ids
    assert all(SEEN in m.flags for m in processed)
    cursor = await ImapCursor.get(mailbox=reader.key)
    assert (cursor.uidvalidity, cursor.last_uid) == (await box.uidvalidity(), uids[-1])
    assert reader.key == f"{box.user}@{box.host}:{box.port}/INBOX"

    assert await reader.run_once() == 0  # nothing new: nothing delivered twice
    assert len(sink.raws) == 7


async def test_without_a_processed_folder_mail_stays_in_the_inbox_marked_seen(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    await box.append([make_reply(1), make_reply(2)])
    sink = Recorder()
    reader = ImapReader(box.settings, sink, processed_folder=None)
    assert await reader.run_once() == 2
    inbox = await box.list("INBOX")
    assert [SEEN in m.flags for m in inbox] == [True, True]

    assert await reader.run_once() == 0  # the cursor, not the flag, keeps them from coming again
    await box.append([make_reply(3)])
    assert await ImapReader(box.settings, sink, processed_folder=None).run_once() == 1  # a new reader resumes
    assert sink.ids == [message_id(make_reply(i)) for i in (1, 2, 3)]


async def test_mail_arriving_while_the_reader_idles_is_delivered_at_once(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    sink = Recorder()
    reader = ImapReader(box.settings, sink, idle_timeout=60, poll_interval=60)
    async with running(reader) as task:
        await box.append([make_reply(1)])
        await until(lambda: len(sink.raws) == 1)
        await asyncio.sleep(0.3)  # the reader is back in IDLE
        await box.append([make_reply(2)])
        took = await until(lambda: len(sink.raws) == 2)
        assert took < 2.0, f"took {took:.2f}s: the IDLE push was not used (poll interval is 60s)"
        assert not task.done()
    assert task.done() and task.exception() is None  # stop ends IDLE at once
    assert [m.message_id for m in await box.list("Processed")] == sink.ids


class NoIdleNoMove(ImapReader):
    """The same reader against a server without IDLE (RFC 2177) and MOVE (RFC 6851)."""

    async def _connect(self):  # type: ignore[no-untyped-def]
        conn = await super()._connect()
        conn.imap.protocol.capabilities -= {"IDLE", "MOVE"}
        return conn


async def test_without_idle_and_move_it_polls_and_copies_then_expunges(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    await box.append([make_reply(1), make_reply(2)])
    sink = Recorder()
    reader = NoIdleNoMove(box.settings, sink, poll_interval=0.2)
    async with running(reader):
        await until(lambda: len(sink.raws) == 2)
        await box.append([make_reply(3)])
        await until(lambda: len(sink.raws) == 3)
    assert await box.list("INBOX") == []  # COPY + \Deleted + UID EXPUNGE (RFC 4315)
    processed = await box.list("Processed")
    assert [m.message_id for m in processed] == sink.ids
    assert all(SEEN in m.flags and "\\Deleted" not in m.flags for m in processed)


async def test_a_failing_sink_leaves_its_message_unmarked_and_the_cursor_behind(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    messages = [make_reply(i) for i in range(1, 6)]
    ids = [message_id(m) for m in messages]
    uids = await box.append(messages)
    failing = Recorder(fail=lambda mid: mid == ids[2])
    reader = ImapReader(box.settings, failing)

    with pytest.raises(SinkFailed) as failed:
        await reader.run_once()

    assert failed.value.uid == uids[2]
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert failing.ids == ids[:2]
    inbox = await box.list("INBOX")
    assert [m.message_id for m in inbox] == ids[2:]
    assert not any(SEEN in m.flags for m in inbox)
    assert [m.message_id for m in await box.list("Processed")] == ids[:2]
    assert (await ImapCursor.get(mailbox=reader.key)).last_uid == uids[1]

    healthy = Recorder()
    assert await ImapReader(box.settings, healthy).run_once() == 3
    assert healthy.ids == ids[2:]
    assert [m.message_id for m in await box.list("Processed")] == ids


async def test_run_retries_after_the_sink_fails(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    outage = {"on": True}
    sink = Recorder(fail=lambda _mid: outage["on"])
    async with running(ImapReader(box.settings, sink, backoff_max=0.3)) as task:
        await box.append([make_reply(1), make_reply(2)])
        await asyncio.sleep(0.5)
        assert sink.raws == [] and not task.done()
        outage["on"] = False  # the database is back
        await until(lambda: len(sink.raws) == 2)
    assert sink.ids == [message_id(make_reply(1)), message_id(make_reply(2))]


async def test_a_connection_cut_mid_fetch_reconnects_and_loses_nothing(
    db: str, server: DovecotServer, cutting_proxy: CuttingProxy
) -> None:
    box = server.new_mailbox()
    messages = [make_reply(i, size=2000) for i in range(1, 41)]
    await box.append(messages)
    # First cut inside the first message literal of the first batch; the second in the middle of
    # the second batch's FETCH, after the first batch was delivered and moved on the second connection.
    cutting_proxy.cut_after(500)
    cutting_proxy.cut_after(700, skip=15)
    sink = Recorder()
    reader = ImapReader(cutting_proxy.settings_for(box), sink, batch_size=10, timeout=5, backoff_max=0.5)
    async with running(reader):
        await until(lambda: len(sink.raws) >= 40, timeout=4)  # a cut is noticed at once, not after `timeout`
        assert cutting_proxy.cuts == 2 and cutting_proxy.connections >= 3

        await asyncio.sleep(0.3)
        cutting_proxy.cut_all()  # the connection dies while the reader IDLEs
        await box.append([make_reply(41)])
        await until(lambda: len(sink.raws) >= 41, timeout=10)

    expected = {message_id(m) for m in messages} | {message_id(make_reply(41))}
    assert set(sink.ids) == expected  # nothing lost; a re-delivery could only repeat unmarked mail
    assert await box.list("INBOX") == []
    assert {m.message_id for m in await box.list("Processed")} == expected


async def store_once(raw: bytes) -> None:
    """An idempotent sink like the real one: one InboundEvent per Message-ID, committed on return."""
    try:
        await InboundEvent.create(channel="email", provider_id=message_id(raw), payload=raw.decode(errors="replace"))
    except IntegrityError:
        pass  # already committed by an earlier delivery


async def test_killed_between_commit_and_marking_redelivers_and_the_sink_keeps_one_copy(
    db: str, server: DovecotServer
) -> None:
    box = server.new_mailbox()
    messages = [make_reply(i) for i in range(1, 6)]
    ids = [message_id(m) for m in messages]
    await box.append(messages)
    calls: list[str] = []
    killed = asyncio.Event()

    async def sink_then_die(raw: bytes) -> None:
        await store_once(raw)  # committed...
        calls.append(message_id(raw))
        if len(calls) == 3:
            killed.set()
            await asyncio.Event().wait()  # ...and the process dies before the reader marks anything

    stop = asyncio.Event()
    task = asyncio.create_task(ImapReader(box.settings, sink_then_die).run(stop))
    await asyncio.wait_for(killed.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    inbox = await box.list("INBOX")
    assert [m.message_id for m in inbox] == ids and not any(SEEN in m.flags for m in inbox)
    assert await InboundEvent.all().count() == 3

    async def counting(raw: bytes) -> None:
        calls.append(message_id(raw))
        await store_once(raw)

    assert await ImapReader(box.settings, counting).run_once() == 5  # after the restart: all again
    assert calls == ids[:3] + ids  # the first three reached the sink twice...
    stored = await InboundEvent.all().order_by("id").values_list("provider_id", flat=True)
    assert stored == ids  # ...and are stored exactly once
    assert [m.message_id for m in await box.list("Processed")] == ids


async def test_a_new_uidvalidity_rereads_the_whole_mailbox(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    await box.append([make_reply(1), make_reply(2)], mailbox="Replies")
    sink = Recorder()
    reader = ImapReader(box.settings, sink, mailbox="Replies", processed_folder=None)
    assert await reader.run_once() == 2
    before = await ImapCursor.get(mailbox=reader.key)
    assert before.last_uid == 2

    await box.recreate("Replies")  # the server must give the new folder a new UIDVALIDITY
    new_uids = await box.append([make_reply(3)], mailbox="Replies", flags="(\\Seen)")
    new_uids += await box.append([make_reply(4)], mailbox="Replies")
    assert new_uids == [1, 2]  # the same UIDs as before: trusting the old cursor would skip both

    assert await reader.run_once() == 2
    assert sink.ids[2:] == [message_id(make_reply(3)), message_id(make_reply(4))]  # \Seen too
    after = await ImapCursor.get(mailbox=reader.key)
    assert after.uidvalidity == await box.uidvalidity("Replies") != before.uidvalidity
    assert after.last_uid == 2


async def test_only_one_reader_per_mailbox_reads_at_a_time(db: str, server: DovecotServer) -> None:
    box = server.new_mailbox()
    first, second = Recorder(), Recorder()
    reader_a = ImapReader(box.settings, first, lock_retry=0.1)
    reader_b = ImapReader(box.settings, second, lock_retry=0.1)
    stop_a = asyncio.Event()
    task_a = asyncio.create_task(reader_a.run(stop_a))
    try:
        await until(lambda: reader_a.holds_lock)
        async with running(reader_b):
            await asyncio.sleep(0.3)
            assert not reader_b.holds_lock
            if dialect() == "postgres":  # the lock is visible to any other session
                other = await asyncpg.connect(db)
                try:
                    assert await other.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(reader_a.key)) is False
                finally:
                    await other.close()
            await box.append([make_reply(1), make_reply(2)])
            await until(lambda: len(first.raws) == 2)
            await asyncio.sleep(0.2)
            assert second.raws == []

            stop_a.set()
            await asyncio.wait_for(task_a, 5)
            await until(lambda: reader_b.holds_lock)  # the waiting reader takes over
            await box.append([make_reply(3)])
            await until(lambda: len(second.raws) == 1)
        assert first.ids == [message_id(make_reply(1)), message_id(make_reply(2))]
        assert second.ids == [message_id(make_reply(3))]
    finally:
        stop_a.set()
        await asyncio.wait_for(task_a, 5)


# --- The protocol helpers, without a server ---------------------------------------------------------

def test_parse_fetch_matches_literals_by_size_and_order_of_attributes() -> None:
    body = b"Subject: x\r\n\r\n* 2 FETCH (UID 7 BODY[] {3}\r\n)\r\nA1 OK Fetch completed\r\n"
    lines = [
        b"1 FETCH (UID 5 BODY[] {%d}" % len(body), bytearray(body), b")",
        b"4 FETCH (FLAGS (\\Seen))",                                       # unsolicited: no literal
        b"2 FETCH (BODY[] {3}", bytearray(b"abc"), b" UID 6 FLAGS (\\Recent))",  # UID after the body
        b"3 FETCH (UID 8 RFC822.SIZE 1234)",
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    items = list(parse_fetch(lines))
    assert [(i.seq, i.uid, i.body) for i in items] == [(1, 5, body), (4, None, None), (2, 6, b"abc"), (3, 8, None)]
    assert items[3].size == 1234
    assert b"FLAGS (\\Recent)" in items[2].attributes


def test_parse_fetch_rejects_a_literal_of_the_wrong_size() -> None:
    with pytest.raises(Exception, match="literal announced 10 bytes, got 3"):
        list(parse_fetch([b"1 FETCH (UID 1 BODY[] {10}", bytearray(b"abc"), b")", b"done"]))


def test_helpers_write_uid_sets_and_mailbox_names() -> None:
    assert uid_set([9, 1, 2, 3, 7, 10, 2]) == "1:3,7,9:10"
    assert uid_set([4]) == "4"
    assert parse_search([b"2 3 4", b"Search completed."]) == [2, 3, 4]
    assert parse_search([b"", b"Search completed."]) == []
    assert encode_mailbox("Años & más") == "A&APE-os &- m&AOE-s"  # RFC 3501 5.1.3
    assert quote_mailbox('My "Replies"') == '"My \\"Replies\\""'
