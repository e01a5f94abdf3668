"""Writing a campaign's decisions: tokens, deliveries and invitations, bulk-inserted per chunk.

Rows are inserted without building a model instance per row (executemany on SQLite, COPY on
PostgreSQL), and ids are read back by indexed keys, since bulk inserts do not return them.
"""
from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from gateway.channels.base import DeliveryStatus
from gateway.db import db_value, insert_rows, placeholders
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


