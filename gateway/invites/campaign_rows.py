"""Writing a campaign's decisions: tokens, deliveries and invitations, bulk-inserted per chunk.

Rows are inserted without building a model instance per row (executemany on SQLite, COPY on
PostgreSQL), and ids are read back by indexed keys, since bulk inserts do not return them.
"""
from __future__ import annotations

import asyncio
import enum
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from gateway.channels.base import DeliveryStatus
from gateway.db import dialect, placeholders
from gateway.directory.models import (
    School,
)
from gateway.invites.models import (
    Invitation,
    InvitationCampaign,
    InvitationState,
)
from gateway.invites.targets import Decision
from gateway.invites.tokens import (
    FIRST_LOGIN_TTL,
    LoginToken,
    Purpose,
    derive_token,
    hash_token,
)
from gateway.threads.models import Delivery
from gateway.threads.sms_pool import link_sender


async def _ids_by(conn: BaseDBAsyncClient, model: type[Model], column: str, keys: list) -> dict:
    """{key: id} for the rows of `model` whose `column` is one of `keys` (an indexed column)."""
    found: dict = {}
    table = model._meta.db_table
    for start in range(0, len(keys), 5000):
        part = keys[start:start + 5000]
        query = placeholders(conn.capabilities.dialect == "postgres", f'SELECT "{column}", "id" FROM "{table}" WHERE "{column}" IN '
                                    f'({", ".join("?" * len(part))})')
        _, rows = await conn.execute_query(query, part)
        found.update((row[0], row[1]) for row in rows)
    return found


# ------------------------------------------------------------------------------------- writing


@dataclass
class PreparedRows:
    part: list[Decision]
    invite: list[Decision]
    hashes: dict[int, str]                 # user id → hash of their new token
    token_rows: list[tuple]


async def prepare_rows(part: list[Decision], secret_key: str, now: datetime, *, slice_size: int = 500) -> PreparedRows:
    """The chunk's new tokens (salt, hash, expiry). Hands the loop back now and then, so the previous
    chunk's writes go on meanwhile (they run in the database driver's thread, or on the server)."""
    invite = [d for d in part if d.reason is None]
    hashes: dict[int, str] = {}
    token_rows: list[tuple] = []
    randomness = secrets.token_hex(16 * len(invite))  # one call for the chunk's salts, 128 bits each
    purpose, expires = Purpose.FIRST_LOGIN.value, db_value(now + FIRST_LOGIN_TTL)
    for i, d in enumerate(invite):
        salt = randomness[32 * i:32 * i + 32]
        digest = hash_token(derive_token(secret_key, Purpose.FIRST_LOGIN, salt))
        hashes[d.user_id] = digest
        token_rows.append((d.user_id, purpose, salt, digest, expires))
        if i % slice_size == slice_size - 1:
            await asyncio.sleep(0)
    return PreparedRows(part, invite, hashes, token_rows)


async def write_chunk(campaign: InvitationCampaign, school: School, part: list[Decision], secret_key: str,
                       pool: list[str], quiet_end: datetime | None, now: datetime) -> None:
    await write_rows(campaign, school, await prepare_rows(part, secret_key, now), pool, quiet_end, now)


async def write_rows(campaign: InvitationCampaign, school: School, prepared: PreparedRows, pool: list[str],
                          quiet_end: datetime | None, now: datetime) -> None:
    """One transaction: the chunk's tokens, deliveries and invitation rows (three executemany inserts,
    and two look-ups by indexed keys for the ids the next insert points at)."""
    invite, hashes = prepared.invite, prepared.hashes
    async with in_transaction() as conn:
        stamp, later = db_value(now), db_value(quiet_end or now)
        token_ids: dict[int, int] = {}
        delivery_ids: dict[int, int] = {}
        if invite:
            await insert_rows(conn, LoginToken, ("user_id", "purpose", "salt", "token_hash", "expires_at"),
                              prepared.token_rows, now)
            by_hash = await _ids_by(conn, LoginToken, "token_hash", list(hashes.values()))
            token_ids = {uid: by_hash[h] for uid, h in hashes.items()}
            queued = DeliveryStatus.QUEUED.value
            await insert_rows(conn, Delivery, (
                "login_token_id", "school_id", "recipient_id", "channel", "address", "sender", "status",
                "next_attempt_at"), [
                (token_ids[d.user_id], school.id, d.user_id, d.channel, d.address,
                 link_sender(pool, d.user_id) if d.channel == "sms" else None, queued,
                 later if d.channel == "sms" else stamp)
                for d in invite
            ], now)
            by_token = await _ids_by(conn, Delivery, "login_token_id", list(token_ids.values()))
            delivery_ids = {uid: by_token[tid] for uid, tid in token_ids.items()}
        invited, skipped = InvitationState.INVITED.value, InvitationState.SKIPPED.value
        await insert_rows(conn, Invitation, (
            "campaign_id", "user_id", "state", "skip_reason", "channel", "delivery_id", "login_token_id"), [
            (campaign.id, d.user_id, invited if d.reason is None else skipped,
             d.reason.value if d.reason is not None else None, d.channel,
             delivery_ids.get(d.user_id), token_ids.get(d.user_id))
            for d in prepared.part
        ], now)


def db_value(value: object) -> object:
    """A datetime as the driver stores it. SQLite gets the text tortoise writes (isoformat with a space),
    made once here instead of once per row by the sqlite3 adapter (a Python call per value)."""
    if isinstance(value, datetime) and dialect() != "postgres":
        return value.isoformat(" ")
    return value


async def insert_rows(conn: BaseDBAsyncClient, model: type[Model], columns: Sequence[str], rows: list[tuple],
                      now: datetime) -> None:
    """INSERT `rows` (values for `columns`, already in database form): executemany on SQLite, COPY on
    PostgreSQL.

    Every other column of the table gets its field's default (auto_now fields: `now`), so a field
    added to the model with a default needs no change here. This is bulk_create without building a
    model instance per row, which is most of its cost at 100,000 rows.
    """
    if not rows:
        return
    meta = model._meta
    extra_columns: list[str] = []
    extra_values: list[object] = []
    for name, column in meta.fields_db_projection.items():
        if name == meta.pk_attr or name in columns:
            continue
        f = meta.fields_map[name]
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value: object = now
        elif f.default is not None:
            value = f.default() if callable(f.default) else f.default
        elif f.null:
            value = None
        else:
            raise TypeError(f"{model.__name__}.{name} has no default; give it a value")
        extra_columns.append(column)
        extra_values.append(db_value(value.value if isinstance(value, enum.Enum) else value))
    names = [meta.fields_db_projection[c] for c in columns] + extra_columns
    extra = tuple(extra_values)
    if conn.capabilities.dialect == "postgres":
        # COPY: an order of magnitude faster than executemany (constraints are checked all the same).
        async with conn.acquire_connection() as raw:
            await raw.copy_records_to_table(meta.db_table, records=[row + extra for row in rows], columns=names)
        return
    marks = ", ".join("?" * len(names))
    sql = placeholders(conn.capabilities.dialect == "postgres", f'INSERT INTO "{meta.db_table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
                              f'VALUES ({marks})')
    # One prepared statement, executemany: the fastest way into SQLite.
    for start in range(0, len(rows), 1000):
        await conn.execute_many(sql, [row + extra for row in rows[start:start + 1000]])


# ------------------------------------------------------------------------------------- reading
