"""One IMAP reader per mailbox, however many processes run (DESIGN section 7).

Two readers on one mailbox would each hand every message to the sink and race on the flags and the
cursor. Nothing would be lost (the sink is idempotent), but the work doubles and the cursor could
move back, so a reader holds a lock named after its mailbox for as long as it runs:

- PostgreSQL: a session-level `pg_try_advisory_lock` on a DEDICATED asyncpg connection. Through
  tortoise's pool the unlock ran on another pooled connection and the lock leaked (STACK.md); a
  connection of our own also means the lock dies with it, so a crashed process never blocks the next.
- SQLite (one machine): `flock` on a file next to the database. flock locks belong to the open file
  description, so two readers in the same process exclude each other as well as two processes, which
  is what a separate process-wide asyncio lock would add; the kernel drops the lock when the process dies.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from tortoise import connections

from gateway.db import connection_config, is_postgres


class MailboxLock(Protocol):
    held: bool
    lost: asyncio.Event  # set when a held lock was lost behind our back (its connection died)

    async def try_acquire(self) -> bool: ...

    async def release(self) -> None: ...


def lock_key(mailbox_key: str) -> int:
    """A stable signed 64-bit advisory-lock key for a mailbox (Python's hash() changes per process)."""
    digest = hashlib.sha256(b"gateway-imap:" + mailbox_key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgAdvisoryLock:
    def __init__(self, params: dict[str, Any], key: int) -> None:
        self.params = params
        self.key = key
        self.held = False
        self.lost = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._releasing = False

    async def try_acquire(self) -> bool:
        if self.held and not self.lost.is_set():
            return True
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(**self.params, timeout=10)
            self._conn.add_termination_listener(self._terminated)
        self.lost.clear()
        self.held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
        return self.held

    def _terminated(self, _conn: asyncpg.Connection) -> None:
        if self.held and not self._releasing:
            self.held = False
            self.lost.set()

    async def release(self) -> None:
        # Closing the session releases its advisory locks; no pg_advisory_unlock round trip needed.
        self._releasing = True
        try:
            if self._conn is not None and not self._conn.is_closed():
                try:
                    await asyncio.wait_for(self._conn.close(), 5)
                except (TimeoutError, OSError, asyncpg.PostgresError):
                    self._conn.terminate()
        finally:
            self._conn = None
            self.held = False
            self._releasing = False


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False
        self.lost = asyncio.Event()  # a flock cannot be lost while we keep the descriptor open
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self.held:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd, self.held = fd, True
        return True

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd, self.held = None, False


def mailbox_lock(mailbox_key: str, database_url: str | None = None) -> MailboxLock:
    """The right lock for the database in use: `database_url`, else tortoise's default connection."""
    key = lock_key(mailbox_key)
    if database_url is not None:
        credentials = connection_config(database_url)["credentials"]
        postgres = is_postgres(database_url)
    else:
        client = connections.get("default")
        postgres = client.capabilities.dialect == "postgres"
        credentials = (
            {"host": client.host, "port": client.port, "user": client.user, "password": client.password,
             "database": client.database}
            if postgres else {"file_path": client.filename}
        )
    if postgres:
        params = {k: credentials[k] for k in ("host", "port", "user", "password", "database")}
        return PgAdvisoryLock(params, key)
    file_path = str(credentials.get("file_path") or "")
    name = f"imap-{key & 0xFFFFFFFFFFFFFFFF:016x}.lock"
    if file_path in ("", ":memory:"):
        return FileLock(Path(tempfile.gettempdir()) / f"gateway-{name}")
    database = Path(file_path).resolve()
    return FileLock(database.with_name(f"{database.name}.{name}"))
