"""Telling open pages that a conversation changed (a reply arrived, a staff member wrote, it closed).

A signal carries only the conversation id. Whoever watches that conversation wakes up and reads what
is new from the database itself, so a lost, late or repeated signal costs a query, never a wrong
page, and nothing private travels through the signal.

- One process (SQLite, the embedded default): signals go straight to this process's watchers.
- PostgreSQL: `publish` sends `NOTIFY gateway_live, '<id>'`; every process LISTENs on a dedicated
  asyncpg connection and wakes its own watchers, so a reply routed by one process reaches a page
  served by another. The listening connection reconnects after a loss and then wakes every watcher
  (signals sent while it was down are lost; the watchers re-read, so nothing is missed on the page).
  NOTIFY payloads are limited to 8000 bytes (PostgreSQL docs, NOTIFY), hence the chunking.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any, Iterable, Iterator

import asyncpg
from tortoise import connections

log = logging.getLogger(__name__)

CHANNEL = "gateway_live"
MAX_PAYLOAD = 7900
KEEPALIVE_EVERY = 30.0  # seconds between probes of the listening connection


class LiveHub:
    """The watchers of this process, by conversation id. Single-process delivery."""

    def __init__(self) -> None:
        self._watchers: dict[int, set[asyncio.Event]] = defaultdict(set)
        self.stopping = False  # set at shutdown: open streams end so the server can stop

    @contextlib.contextmanager
    def watch(self, conversation_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever the conversation may have changed (clear it before re-reading)."""
        event = asyncio.Event()
        self._watchers[conversation_id].add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(conversation_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[conversation_id]

    def watching(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def wake(self, conversation_ids: Iterable[int]) -> None:
        for conversation_id in conversation_ids:
            for event in self._watchers.get(conversation_id, ()):
                event.set()

    def wake_all(self) -> None:
        self.wake(list(self._watchers))

    async def publish(self, *conversation_ids: int) -> None:
        """Tell every watcher of these conversations, in every process. Call after the commit."""
        self.wake(conversation_ids)

    async def start(self) -> None:
        return None

    def stop_streams(self) -> None:
        """Shutdown: every open stream ends (aiohttp waits for open responses otherwise)."""
        self.stopping = True
        self.wake_all()

    async def close(self) -> None:
        self.stop_streams()


class PostgresLiveHub(LiveHub):
    """Signals through PostgreSQL LISTEN/NOTIFY, so they reach watchers in every process."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.params = params
        self._conn: asyncpg.Connection | None = None
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._listen()
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """A half-open connection raises no termination event: probe it, and listen anew if it hangs."""
        while not self._closing:
            await asyncio.sleep(KEEPALIVE_EVERY)
            conn = self._conn
            if conn is None or conn.is_closed():
                continue
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            except Exception:  # noqa: BLE001
                log.warning("live updates: the listening connection does not answer; listening anew")
                conn.terminate()  # fires the termination listener, which listens again

    async def _listen(self) -> None:
        conn = await asyncpg.connect(**self.params, timeout=10)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.wake(int(part) for part in payload.split(",") if part.isdigit())

    def _on_lost(self, _conn: Any) -> None:
        if not self._closing and (self._reconnect is None or self._reconnect.done()):
            self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await self._listen()
            except Exception as exc:  # noqa: BLE001 (any failure: try again later, never give up)
                log.warning("live updates: listening again failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            log.info("live updates: listening again")
            self.wake_all()  # whatever was signalled meanwhile: every page re-reads
            return

    async def publish(self, *conversation_ids: int) -> None:
        conn = connections.get("default")
        for payload in _payloads(conversation_ids):
            await conn.execute_query("SELECT pg_notify($1, $2)", [CHANNEL, payload])

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnect, self._keepalive):
            if task is not None:
                task.cancel()
        if self._conn is not None and not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), 5)
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                self._conn.terminate()
        await super().close()


def _payloads(conversation_ids: Iterable[int]) -> Iterator[str]:
    chunk: list[str] = []
    size = 0
    for conversation_id in dict.fromkeys(conversation_ids):
        part = str(conversation_id)
        if chunk and size + len(part) + 1 > MAX_PAYLOAD:
            yield ",".join(chunk)
            chunk, size = [], 0
        chunk.append(part)
        size += len(part) + 1
    if chunk:
        yield ",".join(chunk)


def hub_for(database_url: str) -> LiveHub:
    from gateway.db import connection_config, is_postgres

    if not is_postgres(database_url):
        return LiveHub()
    credentials = connection_config(database_url)["credentials"]
    return PostgresLiveHub({k: credentials[k] for k in ("host", "port", "user", "password", "database")})
