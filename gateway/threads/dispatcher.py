"""The outbox dispatcher: claims due deliveries with a lease, sends them, records what happened.

Claiming (DESIGN section 3 and 7). A delivery is due when it is `queued`, its `next_attempt_at` has
come, and nobody holds an unexpired lease on it. A worker takes a batch in one transaction: on
PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` lets several workers take disjoint batches without
waiting on each other; on SQLite (which drops that clause) the UPDATE repeats the "still
claimable" condition, so two processes can never both win a row. The claim writes a batch token
and a lease end; a worker that dies simply lets its leases run out, and the rows become due again.

Sending is at-least-once by necessity (no SMS or SMTP API is idempotent): a crash between the
provider's acceptance and our write repeats that one send. Results are written as they arrive
(gateway.threads.outcomes) to keep that window short; once `sent` is recorded a row is never
claimed again. E-mail keeps the same Message-ID on every attempt, so a repeat is recognisable.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from gateway.channels.base import (
    Channel,
    ContactProblem,
    DeliveryStatus,
    OutboundItem,
    PermanentSendError,
    TransientSendError,
)
from gateway.clock import utcnow
from gateway.db import dialect
from gateway.directory.contacts import redact
from gateway.directory.models import ContactPoint, School, User
from gateway.invites.join_links import join_tokens
from gateway.invites.outbox import link_url
from gateway.invites.tokens import LoginToken, Purpose, derive_token
from gateway.metrics import SEND_SECONDS
from gateway.settings import Settings
from gateway.threads.addresses import reply_token
from gateway.threads.channel_choice import Contact
from gateway.threads.models import Conversation, Delivery, Message, ReplyToken
from gateway.threads.outcomes import Outcome, OutcomeRecorder
from gateway.threads.quiet_hours import quiet_until
from gateway.threads.rate_limit import RateLimiter
from gateway.threads.render import LinkUnusable, OutboundContext, render

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    token: str
    deliveries: list[Delivery]
    contexts: dict[int, OutboundContext] = field(default_factory=dict)
    contacts: dict[int, list[Contact]] = field(default_factory=dict)
    schools: dict[int, School] = field(default_factory=dict)   # by delivery id


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        channels: Mapping[str, Channel],
        *,
        worker_id: str | None = None,
        sms_concurrency: int = 32,
        email_concurrency: int = 8,
    ) -> None:
        self.settings = settings
        self.channels = dict(channels)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._batches = 0
        self._limits = {
            "sms": RateLimiter(settings.sms_rate_per_number),
            "email": RateLimiter(settings.smtp_rate, burst=max(1.0, settings.smtp_rate)),
        }
        self._concurrency = {"sms": asyncio.Semaphore(sms_concurrency), "email": asyncio.Semaphore(email_concurrency)}
        self.outcomes = OutcomeRecorder()
        self._wake = asyncio.Event()
        self.sent_count = 0

    # ------------------------------------------------------------------ loop

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, keeping up to two batches in flight (claim while sending)."""
        in_flight: set[asyncio.Task[int]] = set()
        failures = 0
        while not stop.is_set():
            try:
                batch = await self.claim() if len(in_flight) < 2 else None
                failures = 0
            except Exception:  # the database is down or busy: keep the worker alive and retry
                failures += 1
                log.exception("claiming deliveries failed (attempt %d)", failures)
                await _sleep_or(stop, min(30.0, 0.5 * 2**failures))
                continue
            if batch is not None:
                in_flight.add(asyncio.create_task(self._process(batch)))
                continue
            if in_flight:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception():
                        log.error("a dispatch batch failed", exc_info=task.exception())
                continue
            self._wake.clear()
            await _sleep_or(stop, self.settings.worker_poll_seconds, self._wake)
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim one batch and finish it; returns how many deliveries it held (0: nothing due)."""
        batch = await self.claim()
        if batch is None:
            return 0
        return await self._process(batch)

    async def drain(self) -> int:
        """Send everything due now (tests, `gateway demo`)."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    # ------------------------------------------------------------------ claim

    async def claim(self, limit: int | None = None) -> _Batch | None:
        limit = limit or self.settings.worker_batch_size
        now = utcnow()
        self._batches += 1
        token = f"{self.worker_id}:{self._batches}"
        claimable = Q(status=DeliveryStatus.QUEUED, next_attempt_at__lte=now) & (
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        )
        async with in_transaction():
            query = Delivery.filter(claimable).order_by("next_attempt_at", "id").limit(limit).only("id")
            if dialect() == "postgres":
                # Not values_list(): tortoise 1.1.9 silently drops FOR UPDATE from it.
                query = query.select_for_update(skip_locked=True)
            ids = [row.id for row in await query]
            if not ids:
                return None
            await Delivery.filter(claimable, id__in=list(ids)).update(
                claimed_by=token,
                claimed_until=now + timedelta(seconds=self.settings.lease_seconds),
                attempts=F("attempts") + 1,
            )
        deliveries = await Delivery.filter(claimed_by=token, status=DeliveryStatus.QUEUED)
        if not deliveries:
            return None
        batch = _Batch(token, deliveries)
        await self._load(batch)
        return batch

    async def _load(self, batch: _Batch) -> None:
        """Everything the batch needs to render, in a handful of queries.

        A delivery carries a conversation's message, or (no message) a login link: the invitation
        or sign-in link of its LoginToken, for its school. E-mail to someone who has not joined yet
        also gets their join link (gateway.invites.join_links: one query for the batch's tokens).
        """
        ds = batch.deliveries
        now = utcnow()
        message_ids = {d.message_id for d in ds if d.message_id is not None}
        messages = {m["id"]: m for m in await Message.filter(id__in=message_ids).values(
            "id", "conversation_id", "author_id", "body", "urgent")} if message_ids else {}
        conversations = {c["id"]: c for c in await Conversation.filter(
            id__in={m["conversation_id"] for m in messages.values()}).values(
            "id", "school_id", "kind", "subject")} if messages else {}
        token_ids = {d.login_token_id for d in ds if d.message_id is None and d.login_token_id is not None}
        tokens = {t["id"]: t for t in await LoginToken.filter(id__in=token_ids).values(
            "id", "user_id", "purpose", "salt", "expires_at", "used_at")} if token_ids else {}
        school_ids = {c["school_id"] for c in conversations.values()} | {
            d.school_id for d in ds if d.message_id is None and d.school_id is not None}
        schools = {s.id: s for s in await School.filter(id__in=school_ids)}
        recipient_ids = {d.recipient_id for d in ds}
        user_ids = recipient_ids | {m["author_id"] for m in messages.values() if m["author_id"]}
        users = {u["id"]: u for u in await User.filter(id__in=user_ids).values(
            "id", "name", "locale", "joined_at", "login_enabled")}
        salts = {
            (t["conversation_id"], t["user_id"]): t["salt"]
            for t in await ReplyToken.filter(
                conversation_id__in=list(conversations), user_id__in=list(recipient_ids)
            ).values("conversation_id", "user_id", "salt")
        } if conversations else {}
        contacts: dict[int, list[Contact]] = defaultdict(list)
        for cp in await ContactPoint.filter(user_id__in=recipient_ids).order_by("id"):
            contacts[cp.user_id].append(Contact(cp.kind, cp.address, cp.problem))
        batch.contacts = contacts
        unjoined = {d.recipient_id for d in ds if d.message_id is not None and d.channel == "email"
                    and users[d.recipient_id]["joined_at"] is None}
        join = await join_tokens(unjoined, {uid: users[uid]["login_enabled"] for uid in unjoined},
                                 self.settings.secret_key, now=now) if unjoined else {}
        for d in ds:
            recipient = users[d.recipient_id]
            if d.message_id is None:
                token = tokens.get(d.login_token_id)  # type: ignore[arg-type]
                school = schools.get(d.school_id)  # type: ignore[arg-type]
                if school is None:  # never written so; fail this one delivery, not the whole batch
                    school, token = School(name="", timezone="UTC", quiet_hours_start=0, quiet_hours_end=0), None
                batch.schools[d.id] = school
                batch.contexts[d.id] = self._link_context(d, token, school, recipient, now)
                continue
            message = messages[d.message_id]
            conversation = conversations[message["conversation_id"]]
            school = batch.schools[d.id] = schools[conversation["school_id"]]
            salt = salts.get((conversation["id"], d.recipient_id))
            author = users.get(message["author_id"]) if message["author_id"] else None
            kind = conversation["kind"].value if hasattr(conversation["kind"], "value") else conversation["kind"]
            join_token = join.get(d.recipient_id) if d.channel == "email" else None
            batch.contexts[d.id] = OutboundContext(
                delivery_id=d.id,
                conversation_id=conversation["id"],
                channel=d.channel,
                to=d.address or "",
                sms_sender=d.sender,
                kind=kind,
                subject=conversation["subject"],
                body=message["body"],
                urgent=message["urgent"],
                author_name=author["name"] if author else None,
                school_name=school.name,
                locale=recipient["locale"] or school.default_locale,
                reply_token=reply_token(self.settings.secret_key, salt) if salt else None,
                reply_domain=school.reply_domain or self.settings.reply_domain,
                short_link=kind == "newsletter" and d.channel == "sms",
                join_link=link_url(self.settings.public_url, Purpose.FIRST_LOGIN, join_token) if join_token else None,
            )

    def _link_context(self, d: Delivery, token: dict | None, school: School, recipient: dict,
                      now: datetime) -> OutboundContext:
        """The context of an invitation or sign-in link: the link is derived again from the token's salt."""
        problem = None
        link = None
        purpose = Purpose(token["purpose"]) if token else Purpose.FIRST_LOGIN
        if token is None:
            problem = "no_token"
        elif token["used_at"] is not None:
            problem = "used"  # used (or revoked) while it waited in the outbox
        elif token["expires_at"] <= now:
            problem = "expired"
        elif purpose is Purpose.FIRST_LOGIN and recipient["joined_at"] is not None:
            problem = "joined"  # joined meanwhile, through another link
        else:
            link = link_url(self.settings.public_url, purpose, derive_token(self.settings.secret_key, purpose, token["salt"]))
        return OutboundContext(
            delivery_id=d.id,
            conversation_id=None,
            channel=d.channel,
            to=d.address or "",
            sms_sender=d.sender,
            kind="invitation" if purpose is Purpose.FIRST_LOGIN else "login_link",
            subject="",
            body="",
            urgent=d.urgent,
            author_name=None,
            school_name=school.name,
            locale=recipient["locale"] or school.default_locale,
            reply_token=None,
            reply_domain=school.reply_domain or self.settings.reply_domain,
            link=link,
            link_expires_at=token["expires_at"] if token else None,
            link_problem=problem,
            recipient_name=recipient["name"],
            school_timezone=school.timezone,
        )

    # ------------------------------------------------------------------ send

    async def _process(self, batch: _Batch) -> int:
        await asyncio.gather(*(self._deliver(batch, d) for d in batch.deliveries))
        await self.outcomes.flush()
        return len(batch.deliveries)

    async def _deliver(self, batch: _Batch, d: Delivery) -> None:
        ctx = batch.contexts[d.id]
        usable = any(c.address == d.address and c.problem is None for c in batch.contacts.get(d.recipient_id, []))
        if not usable:
            # The address went bad after the message was written (a STOP, a bounce): never send to
            # it, and fall back to the other channel as compose would have (DESIGN section 5).
            problem = next((c.problem for c in batch.contacts.get(d.recipient_id, []) if c.address == d.address), None)
            self.outcomes.record(Outcome(d, DeliveryStatus.SUPPRESSED, error_code="suppressed",
                                         error_reason=problem or "contact_removed",
                                         problem=ContactProblem(problem) if problem else None))
            return
        if d.channel == "sms" and not ctx.urgent:
            school = batch.schools[d.id]
            later = quiet_until(utcnow(), school.timezone, school.quiet_hours_start, school.quiet_hours_end)
            if later is not None:
                self.outcomes.record(Outcome(d, None, retry_at=later, counts_as_attempt=False))
                return
        channel = self.channels.get(d.channel)
        if channel is None:
            self.outcomes.record(Outcome(d, DeliveryStatus.FAILED, error_code="no_channel",
                                 error_reason=f"no {d.channel} channel is configured"))
            return
        try:
            item: OutboundItem = render(ctx, self.settings)
        except LinkUnusable as exc:  # expired, used, or the person joined meanwhile: nothing to send
            self.outcomes.record(Outcome(d, DeliveryStatus.SUPPRESSED, error_code="suppressed",
                                         error_reason=str(exc)[:500]))
            return
        except Exception as exc:  # a template bug must not take the worker down
            log.exception("rendering delivery %s failed", d.id)
            self.outcomes.record(Outcome(d, DeliveryStatus.FAILED, error_code="render", error_reason=str(exc)[:500]))
            return
        key = (ctx.sms_sender or "") if d.channel == "sms" else "smtp"
        async with self._concurrency[d.channel]:
            await self._limits[d.channel].acquire(key)
            started = time.perf_counter()
            try:
                result = await channel.send(item)
            except TransientSendError as exc:
                self.outcomes.record(self._retry_or_fail(d, exc.code, exc.reason, exc.retry_after))
            except PermanentSendError as exc:
                self.outcomes.record(Outcome(d, DeliveryStatus.FAILED, error_code=exc.code, error_reason=exc.reason,
                                     problem=exc.problem))
            except Exception as exc:  # an unexpected provider failure is treated as transient
                log.exception("sending delivery %s failed unexpectedly", d.id)
                self.outcomes.record(self._retry_or_fail(d, "unexpected", repr(exc), None))
            else:
                SEND_SECONDS.labels(d.channel).observe(time.perf_counter() - started)
                self.sent_count += 1
                log.debug("sent delivery %s by %s to %s", d.id, d.channel, redact(d.address))
                self.outcomes.record(Outcome(d, DeliveryStatus.SENT, result=result))

    def _retry_or_fail(self, d: Delivery, code: str, reason: str, retry_after: float | None) -> Outcome:
        if d.attempts >= self.settings.max_attempts:
            return Outcome(d, DeliveryStatus.FAILED, error_code=code, error_reason=f"gave up after {d.attempts} attempts: {reason}")
        # Exponential backoff with "equal jitter": half fixed, half random, so retries spread out.
        ceiling = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (d.attempts - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after:
            delay = max(delay, retry_after)
        return Outcome(d, None, error_code=code, error_reason=reason, retry_at=utcnow() + timedelta(seconds=delay))



async def _sleep_or(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
