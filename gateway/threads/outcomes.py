"""Recording what happened to each send: the outbox's write side.

Outcomes are written as they arrive, in small group commits (everything pending goes in one
transaction), so the window in which a crash can repeat a send stays short. A success is recorded
whoever holds the lease now, because the message did leave; a retry or failure only touches a row
still claimed by the batch that sent it. Permanent failures that say something about the address
mark the contact point and fall back to the recipient's other channel (DESIGN section 5).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from gateway.channels.base import ContactProblem, DeliveryStatus, SendResult
from gateway.clock import utcnow
from gateway.db import dialect, placeholders
from gateway.metrics import DELIVERY_OUTCOMES
from gateway.threads.fallback import fall_back
from gateway.threads.models import Delivery
from gateway.threads.status import mark_contact_problem

log = logging.getLogger(__name__)



@dataclass
class Outcome:
    delivery: Delivery
    status: DeliveryStatus | None = None       # None: back to the queue (retry or deferral)
    result: SendResult | None = None
    error_code: str | None = None
    error_reason: str | None = None
    retry_at: datetime | None = None
    problem: ContactProblem | None = None
    counts_as_attempt: bool = True


class OutcomeRecorder:
    def __init__(self) -> None:
        self._pending: list[Outcome] = []
        self._flushing: asyncio.Task[None] | None = None

    def record(self, outcome: Outcome) -> None:
        if outcome.status is None:
            label = "retry" if outcome.counts_as_attempt else "deferred"
        else:
            label = outcome.status.value
        DELIVERY_OUTCOMES.labels(outcome.delivery.channel, label).inc()
        self._pending.append(outcome)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_loop())

    async def flush(self) -> None:
        """Return once everything recorded so far is written."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        if self._pending:
            await self._flush_loop()

    async def _flush_loop(self) -> None:
        """Write outcomes as they arrive: everything pending goes in one transaction (group commit)."""
        while self._pending:
            outcomes, self._pending = self._pending, []
            for attempt in range(5):
                try:
                    await self._write(outcomes)
                    break
                except Exception:
                    log.exception("recording %d outcomes failed (attempt %d)", len(outcomes), attempt + 1)
                    await asyncio.sleep(0.2 * 2**attempt)
            else:
                log.error("could not record %d outcomes; their leases will expire and they will be retried",
                          len(outcomes))

    async def _write(self, outcomes: list[Outcome]) -> None:
        now = utcnow()
        problems: list[Outcome] = []
        sent = [o for o in outcomes if o.status is DeliveryStatus.SENT and o.result is not None]
        async with in_transaction() as conn:
            if sent:
                await self._write_sent(conn, sent, now)
            for o in outcomes:
                if o.status is DeliveryStatus.SENT and o.result is not None:
                    continue
                d = o.delivery
                release = {"claimed_by": None, "claimed_until": None}
                mine = Delivery.filter(id=d.id, claimed_by=d.claimed_by, status=DeliveryStatus.QUEUED)
                if o.status is None:
                    extra = {} if o.counts_as_attempt else {"attempts": F("attempts") - 1}
                    await mine.update(next_attempt_at=o.retry_at, error_code=o.error_code, updated_at=now,
                                      error_reason=(o.error_reason or "")[:500] or None, **extra, **release)
                else:
                    await mine.update(status=o.status, error_code=(o.error_code or "")[:32] or None, updated_at=now,
                                      error_reason=(o.error_reason or "")[:500] or None, **release)
                    if o.problem is not None:
                        problems.append(o)
            for o in problems:
                await mark_contact_problem(o.delivery.recipient_id, o.delivery.channel, o.delivery.address or "",
                                           o.problem, o.error_reason or "")  # type: ignore[arg-type]
                await fall_back(o.delivery, now)

    @staticmethod
    async def _write_sent(conn: BaseDBAsyncClient, sent: list[Outcome], now: datetime) -> None:
        """Record successes with two executemany statements: the hot path of the outbox.

        Success counts whoever holds the lease now: the message did leave. The first statement
        moves queued rows to sent; the second only stores the provider id on rows a status
        callback already moved forward (it beat our write), never moving them back.
        """
        postgres = dialect() == "postgres"
        stamp: object = now if postgres else str(now)  # tortoise stores SQLite datetimes as str(dt)
        to_sent = placeholders(postgres, 'UPDATE "delivery" SET "status"=?, "provider_id"=?, "segments"=?, "sent_at"=?, '
                       '"updated_at"=?, "error_code"=NULL, "error_reason"=NULL, "claimed_by"=NULL, '
                       '"claimed_until"=NULL WHERE "id"=? AND "status"=?')
        late = placeholders(postgres, 'UPDATE "delivery" SET "provider_id"=?, "sent_at"=?, "claimed_by"=NULL, '
                    '"claimed_until"=NULL WHERE "id"=? AND "provider_id" IS NULL')
        sent_status, queued = DeliveryStatus.SENT.value, DeliveryStatus.QUEUED.value
        await conn.execute_many(to_sent, [
            [sent_status, o.result.provider_id, o.result.segments, stamp, stamp, o.delivery.id, queued]  # type: ignore[union-attr]
            for o in sent])
        await conn.execute_many(late, [[o.result.provider_id, stamp, o.delivery.id] for o in sent])  # type: ignore[union-attr]
