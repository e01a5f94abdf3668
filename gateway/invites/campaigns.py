"""Invitation campaigns: who to invite, and the invitations written into the outbox (DESIGN section 6).

A campaign considers everyone in its audiences (staff, guardians, students) of one school, and
records one Invitation row per person, in this order of reasons:

1. joined: has logged in already (skipped_joined);
2. not_enabled: may not log in (a student whose login is not enabled; staff and guardians always may);
3. no_contact: no usable e-mail or phone (missing, opted out, bouncing, unreachable; a phone only
   counts when the school has a number to text from);
4. cap: already invited `max_invitations` times (default 10), by any campaign;
5. cooldown: invited less than `cooldown_days` ago (default 7), by any campaign;
6. otherwise invited: a first_login token and one delivery (e-mail when usable, else SMS) in the
   outbox, where the dispatcher sends it with retries, quiet hours and opt-outs like any message.

Planning is set-based: a handful of queries read the audience, its usable contact points and its
invitation history (gateway.invites.targets), and the rows are written in chunks
(gateway.invites.campaign_rows) (tokens, deliveries, invitations: three
bulk inserts and two look-ups by indexed keys per chunk, each chunk one transaction). The unique
(campaign, user) makes it idempotent: a run that stopped half-way (its process died) is taken over
by a worker when its lease runs out and resumes with the people not yet recorded. A dry run counts
and writes nothing but the counts. Every finished run writes one audit-log entry.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable

from tortoise.expressions import F, Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from gateway.channels.base import DeliveryStatus
from gateway.clock import utcnow
from gateway.directory.models import (
    AuditLog,
    School,
)
from gateway.invites.campaign_rows import prepare_rows, write_rows
from gateway.invites.models import (
    AUDIENCES,
    CampaignState,
    Invitation,
    InvitationCampaign,
    InvitationState,
    SkipReason,
)
from gateway.invites.targets import Decision, decide
from gateway.threads.quiet_hours import quiet_until

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_DAYS = 7
DEFAULT_MAX_INVITATIONS = 10
CHUNK = 5000                      # people per write transaction
LEASE = timedelta(minutes=2)      # renewed after every chunk
MAX_ATTEMPTS = 5                  # a campaign that fails this often is finished with its error
COUNT_OF_REASON = {
    SkipReason.JOINED: "skipped_joined",
    SkipReason.NOT_ENABLED: "skipped_not_enabled",
    SkipReason.NO_CONTACT: "skipped_no_contact",
    SkipReason.CAP: "skipped_cap",
    SkipReason.COOLDOWN: "skipped_cooldown",
}
COUNT_FIELDS = ("targeted", "invited", *COUNT_OF_REASON.values())
FAILED_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED, DeliveryStatus.SUPPRESSED)



class LeaseLost(Exception):
    """Another process took the campaign over (this one was too slow to renew its lease)."""


@dataclass
class Counts:
    values: Counter[str] = field(default_factory=Counter)

    def add(self, decision: Decision) -> None:
        self.values["targeted"] += 1
        self.values["invited" if decision.reason is None else COUNT_OF_REASON[decision.reason]] += 1

    def as_fields(self) -> dict[str, int]:
        return {name: self.values[name] for name in COUNT_FIELDS}


# ------------------------------------------------------------------------------------- creating


async def create_campaign(school: School, audiences: Iterable[str], *, dry_run: bool, actor: str,
                          cooldown_days: int = DEFAULT_COOLDOWN_DAYS,
                          max_invitations: int = DEFAULT_MAX_INVITATIONS) -> InvitationCampaign:
    wanted = list(dict.fromkeys(audiences))
    unknown = [a for a in wanted if a not in AUDIENCES]
    if not wanted or unknown:
        raise ValueError(f"audiences must be a non-empty subset of {', '.join(AUDIENCES)}")
    return await InvitationCampaign.create(
        school=school, audiences=wanted, dry_run=dry_run, created_by=actor, cooldown_days=cooldown_days,
        max_invitations=max_invitations, state=CampaignState.QUEUED,
    )


# ------------------------------------------------------------------------------------- running


async def claim(campaign_id: int, owner: str, now: datetime | None = None) -> InvitationCampaign | None:
    """Take the campaign if it is unfinished and nobody holds a live lease on it (a conditional UPDATE).

    One real campaign per school at a time: two running at once would each read the invitation
    history before the other wrote it, and invite the same people twice despite the cooldown. The
    school's row is locked while deciding (FOR UPDATE on PostgreSQL; SQLite serializes writers).
    A dry run writes no invitation and never waits.
    """
    now = now or utcnow()
    row = await InvitationCampaign.get_or_none(id=campaign_id).only("id", "school_id", "dry_run")
    if row is None:
        return None
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(claimed_by=owner)
    async with in_transaction():
        if not row.dry_run:
            await School.filter(id=row.school_id).select_for_update().only("id")
            if await InvitationCampaign.filter(
                    school_id=row.school_id, state=CampaignState.RUNNING, dry_run=False, lease_until__gt=now,
            ).exclude(id=campaign_id).exists():
                return None  # another campaign of the school is being planned: this one waits its turn
        taken = await InvitationCampaign.filter(
            Q(id=campaign_id), Q(state__in=[CampaignState.QUEUED, CampaignState.RUNNING]), free,
        ).update(state=CampaignState.RUNNING, lease_until=now + LEASE, claimed_by=owner, attempts=F("attempts") + 1)
    if not taken:
        return None
    campaign = await InvitationCampaign.get(id=campaign_id)
    if campaign.started_at is None:
        campaign.started_at = now
        await campaign.save(update_fields=["started_at"])
    return campaign


async def stale_campaigns(now: datetime | None = None) -> list[int]:
    """Unfinished campaigns that no process is working on (never started, or their process died)."""
    now = now or utcnow()
    return list(await InvitationCampaign.filter(
        Q(state__in=[CampaignState.QUEUED, CampaignState.RUNNING]),
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
    ).order_by("id").values_list("id", flat=True))


async def run_campaign(campaign_id: int, secret_key: str, *, owner: str | None = None,
                       on_queued: Callable[[], None] | None = None) -> InvitationCampaign | None:
    """Claim and plan one campaign; None when another process has it or it is finished."""
    owner = owner or _owner_id()
    campaign = await claim(campaign_id, owner)
    if campaign is None:
        return None
    try:
        await plan_campaign(campaign, secret_key, owner=owner, on_queued=on_queued)
    except LeaseLost:
        log.warning("invitation campaign %s was taken over by another process", campaign_id)
        return None
    except Exception as exc:
        log.exception("invitation campaign %s failed (attempt %d)", campaign_id, campaign.attempts)
        give_up = campaign.attempts >= MAX_ATTEMPTS
        changes: dict[str, object] = {"error": f"{type(exc).__name__}: {exc}"[:500], "claimed_by": None,
                                      # Retried by a worker once the lease runs out, with a growing pause.
                                      "lease_until": utcnow() + LEASE * campaign.attempts}
        if give_up:
            changes.update(state=CampaignState.DONE, finished_at=utcnow(), lease_until=None)
        await InvitationCampaign.filter(id=campaign_id, claimed_by=owner).update(**changes)
        return None
    return await InvitationCampaign.get(id=campaign_id)


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def plan_campaign(campaign: InvitationCampaign, secret_key: str, *, owner: str,
                        on_queued: Callable[[], None] | None = None, chunk: int = CHUNK) -> None:
    now = utcnow()
    school = await School.get(id=campaign.school_id)
    decisions = await decide(school, campaign, now)
    counts = Counts()
    if campaign.dry_run:
        for decision in decisions:
            counts.add(decision)
    else:
        pool = list(school.sms_numbers or [])
        quiet_end = quiet_until(now, school.timezone, school.quiet_hours_start, school.quiet_hours_end)
        # A pipeline of two: the next chunk's tokens are made while the database writes this one.
        writer: asyncio.Task[None] | None = None
        try:
            for start in range(0, len(decisions), chunk):
                prepared = await prepare_rows(decisions[start:start + chunk], secret_key, now)
                if writer is not None:
                    await writer
                    await _chunk_written(campaign, owner, on_queued)
                writer = asyncio.create_task(write_rows(campaign, school, prepared, pool, quiet_end, now))
            if writer is not None:
                await writer
                await _chunk_written(campaign, owner, on_queued)
        finally:
            if writer is not None and not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        counts = await recount(campaign.id)  # exact, whatever earlier attempts wrote
    fields = counts.as_fields()
    async with in_transaction():
        done = await InvitationCampaign.filter(id=campaign.id, claimed_by=owner).update(
            state=CampaignState.DONE, finished_at=utcnow(), lease_until=None, claimed_by=None, error=None, **fields)
        if not done:
            raise LeaseLost()
        await AuditLog.create(
            school_id=campaign.school_id, actor=campaign.created_by,
            action="invitations.dry_run" if campaign.dry_run else "invitations.run",
            target=f"invitation_campaign:{campaign.id}",
            details={"audiences": campaign.audiences, "dry_run": campaign.dry_run, **fields},
        )
    for name, value in fields.items():
        setattr(campaign, name, value)


async def _chunk_written(campaign: InvitationCampaign, owner: str, on_queued: Callable[[], None] | None) -> None:
    if on_queued is not None:
        on_queued()  # the dispatcher can start on this chunk's invitations now
    await _renew(campaign, owner)


async def _renew(campaign: InvitationCampaign, owner: str) -> None:
    if not await InvitationCampaign.filter(id=campaign.id, claimed_by=owner).update(lease_until=utcnow() + LEASE):
        raise LeaseLost()


async def recount(campaign_id: int) -> Counts:
    counts = Counts()
    rows = await Invitation.filter(campaign_id=campaign_id).annotate(n=Count("id")).group_by(
        "state", "skip_reason").values_list("state", "skip_reason", "n")
    for state, reason, n in rows:
        counts.values["targeted"] += n
        if InvitationState(state) is InvitationState.INVITED:
            counts.values["invited"] += n
        else:
            counts.values[COUNT_OF_REASON[SkipReason(reason)]] += n
    return counts


# ------------------------------------------------------------------------------------- deciding


async def delivery_progress(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """campaign id → how its invitations are doing in the outbox: queued, sent (or delivered), failed
    (failed, undelivered, or suppressed at send time because the address went bad)."""
    out: dict[int, dict[str, int]] = {cid: {"queued": 0, "sent": 0, "failed": 0} for cid in campaign_ids}
    if not campaign_ids:
        return out
    rows = await Invitation.filter(campaign_id__in=campaign_ids, state=InvitationState.INVITED).annotate(
        n=Count("id")).group_by("campaign_id", "delivery__status").values_list("campaign_id", "delivery__status", "n")
    for cid, status, n in rows:
        status = DeliveryStatus(status) if status is not None else DeliveryStatus.FAILED
        if status is DeliveryStatus.QUEUED:
            out[cid]["queued"] += n
        elif status in FAILED_STATUSES:
            out[cid]["failed"] += n
        else:
            out[cid]["sent"] += n
    return out


# ------------------------------------------------------------------------------------- in the background


class CampaignRunner:
    """Runs campaigns in the background of a process: the ones its API starts, and (in processes that
    run workers) any campaign whose process died before finishing it."""

    def __init__(self, secret_key: str, *, on_queued: Callable[[], None] | None = None,
                 sweep_seconds: float = 30.0, wait_seconds: float = 1.0) -> None:
        self.secret_key = secret_key
        self.on_queued = on_queued
        self.sweep_seconds = sweep_seconds
        self.wait_seconds = wait_seconds
        self.owner = _owner_id()
        self._tasks: set[asyncio.Task[InvitationCampaign | None]] = set()

    def start(self, campaign_id: int) -> asyncio.Task[InvitationCampaign | None]:
        task = asyncio.create_task(self._run(campaign_id, wait_turn=True), name=f"invitation-campaign-{campaign_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, campaign_id: int, *, wait_turn: bool = False) -> InvitationCampaign | None:
        """Run the campaign; with `wait_turn`, wait while another campaign of its school is planned."""
        try:
            while True:
                done = await run_campaign(campaign_id, self.secret_key, owner=self.owner, on_queued=self.on_queued)
                if done is not None or not wait_turn:
                    return done
                campaign = await InvitationCampaign.get_or_none(id=campaign_id)
                waiting = campaign is not None and campaign.state is not CampaignState.DONE and (
                    campaign.lease_until is None or campaign.lease_until < utcnow())
                if not waiting:  # finished, or another process has it, or it failed and waits for a retry
                    return None
                await asyncio.sleep(self.wait_seconds)
        except Exception:  # the database went away: the lease runs out and a worker resumes it
            log.exception("invitation campaign %s could not run", campaign_id)
            return None

    async def sweep(self) -> int:
        """Run every stale campaign now, one after the other; returns how many this process finished."""
        finished = 0
        for campaign_id in await stale_campaigns():
            if await self._run(campaign_id) is not None:
                finished += 1
        return finished

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("looking for unfinished invitation campaigns failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.sweep_seconds)
            except TimeoutError:
                pass

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Let running campaigns finish (their lease lets a worker resume them if we are cut short)."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
