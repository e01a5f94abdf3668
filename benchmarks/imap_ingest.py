"""IMAP ingest: ImapReader.run_once against a raw aioimaplib fetch, on a throwaway Dovecot.

    .venv/bin/python benchmarks/imap_ingest.py [--messages 2000] [--batch-size 200]

Appends N realistic small replies (about 1 KB, tests/fakes/dovecot.make_reply) to three fresh
mailboxes of a throwaway Dovecot (the test fixture's code, as plain functions), then times:
1. Baseline: raw aioimaplib, connect + LOGIN + SELECT + one `UID FETCH 1:* (UID BODY.PEEK[])`, then
   parse every message out of the response. Nothing is marked, moved or stored.
2. ImapReader.run_once with a sink that does nothing: fetch in batches, \\Seen + UID MOVE per batch,
   the cursor in SQLite.
3. ImapReader.run_once wired as create_app wires it (gateway.intake.imap_batch_sink): parse the MIME
   into our InboundMessage, store each fetched batch's InboundEvents in SQLite in one transaction
   (idempotent on Message-ID), schedule routing; routing runs alongside, and its end is timed too.
Prints messages/s for each and the ratios to the baseline. Target: at least 500 messages/s for 2 and 3.
Needs the `dovecot` binary (apt-get install dovecot-imapd).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aioimaplib

from gateway.channels.email_imap import ImapReader
from gateway.channels.imap_protocol import parse_fetch
from gateway.db import open_database
from gateway.intake import imap_batch_sink, imap_sink
from gateway.threads.inbound import InboundProcessor
from gateway.threads.models import InboundEvent
from tests.fakes.dovecot import Mailbox, dovecot_unavailable, make_reply, start_dovecot

APPEND_CONNECTIONS = 4  # Dovecot allows 10 per user and IP


async def fill(box: Mailbox, messages: list[bytes]) -> None:
    slices = [messages[i::APPEND_CONNECTIONS] for i in range(APPEND_CONNECTIONS)]
    await asyncio.gather(*(box.append(part) for part in slices if part))


async def raw_fetch(box: Mailbox) -> int:
    imap = aioimaplib.IMAP4(host=box.host, port=box.port, timeout=60)
    await imap.wait_hello_from_server()
    await imap.login(box.user, box.password)
    await imap.select("INBOX")
    response = await imap.uid("fetch", "1:*", "(UID BODY.PEEK[])")
    count = sum(1 for item in parse_fetch(response.lines) if item.body is not None)
    await imap.logout()
    return count


async def nothing(raw: bytes) -> None:
    return None


async def timed(label: str, n: int, run: Awaitable[int]) -> float:
    start = time.perf_counter()
    got = await run
    seconds = time.perf_counter() - start
    assert got == n, f"{label}: expected {n} messages, got {got}"
    rate = n / seconds
    print(f"{label:<46} {n:>6} msgs in {seconds:6.2f} s = {rate:8.0f} msg/s", flush=True)
    return rate


async def main(n: int, batch_size: int) -> None:
    missing = dovecot_unavailable()
    if missing:
        print(missing, file=sys.stderr)
        raise SystemExit(2)
    server = start_dovecot()
    workdir = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    try:
        messages = [make_reply(i) for i in range(n)]
        boxes = [server.new_mailbox() for _ in range(3)]
        start = time.perf_counter()
        await asyncio.gather(*(fill(box, messages) for box in boxes))
        size = sum(map(len, messages)) / n
        print(f"appended {n} messages of {size:.0f} bytes to 3 mailboxes in {time.perf_counter() - start:.1f} s")

        baseline = await timed("baseline: raw aioimaplib UID FETCH 1:* + parse", n, raw_fetch(boxes[0]))
        async with open_database(f"sqlite:///{workdir}/bench.sqlite3", create_schema=True):
            null = await timed("ImapReader.run_once, sink does nothing", n,
                               ImapReader(boxes[1].settings, nothing, batch_size=batch_size).run_once())
            processor = InboundProcessor({"reply.example"})
            start = time.perf_counter()
            stored = await timed("ImapReader.run_once, the gateway's intake sink", n,
                                 ImapReader(boxes[2].settings, imap_sink(processor, 25 * 1024 * 1024),
                                            batch_sink=imap_batch_sink(processor, 25 * 1024 * 1024),
                                            batch_size=batch_size).run_once())
            await processor.wait_idle()
            print(f"{'... and every message routed (here: unmatched)':<46} {n:>6} msgs in "
                  f"{time.perf_counter() - start:6.2f} s")
            assert await InboundEvent.all().count() == n
        print(f"ratio reader/baseline: {null / baseline:.2f} (null sink), {stored / baseline:.2f} (SQLite sink); "
              f"target: at least 500 msg/s -> {'met' if min(null, stored) >= 500 else 'NOT met'}")
    finally:
        server.stop()
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.batch_size))
