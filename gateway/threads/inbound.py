"""Inbound replies: store every item, then classify, route and post it (DESIGN section 3).

`record_inbound` stores the item as an InboundEvent (idempotent on the provider id: Twilio retries,
IMAP re-reads after a crash) and returns at once, so webhooks answer fast. `InboundProcessor`
then takes the event from the database, under a lease, and decides its outcome:
auto-reply and bounce (recorded, never posted, never answered), loop (our own mail coming back),
routed (a Message in its conversation, the staff told), or unmatched (kept for triage).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from gateway.channels.base import (
    ChannelKind,
    InboundMessage,
    inbound_from_json,
    inbound_to_json,
)
from gateway.clock import utcnow
from gateway.directory.contacts import redact
from gateway.directory.models import ContactKind, ContactPoint, Membership, School
from gateway.errors import Conflict
from gateway.threads.bounces import apply_bounce
from gateway.threads.keywords import school_for_number
from gateway.threads.models import (
    Conversation,
    ConversationState,
    Direction,
    InboundEvent,
    InboundOutcome,
    Message,
    Origin,
    Participant,
    RoutedBy,
)
from gateway.threads.notify import forward_reply
from gateway.threads.reply_text import extract_reply, extract_reply_from_html
from gateway.threads.resolver import Resolution, Unresolved, resolve

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)



async def record_inbound(msg: InboundMessage, *, school_id: int | None = None) -> tuple[InboundEvent, bool]:
    """Store `msg` once; returns (the event, whether it is new). Commits before returning."""
    try:
        event = await InboundEvent.create(
            channel=msg.channel.value, provider_id=msg.provider_id[:255], sender=msg.sender[:320],
            payload=msg.raw, normalized=inbound_to_json(msg), school_id=school_id,
        )
        return event, True
    except IntegrityError:
        return await InboundEvent.get(provider_id=msg.provider_id[:255]), False


async def record_many(msgs: list[InboundMessage]) -> list[int]:
    """Store a batch in one transaction, skipping what is stored already; returns the new ids.

    A concurrent writer of the same provider id makes the batch fail as a whole (unique index),
    and the caller offers it again: idempotent, never half-written.
    """
    fresh = {m.provider_id[:255]: m for m in msgs}
    if not fresh:
        return []
    async with in_transaction():
        known = set(await InboundEvent.filter(provider_id__in=list(fresh)).values_list("provider_id", flat=True))
        rows = [InboundEvent(channel=m.channel.value, provider_id=key, sender=m.sender[:320], payload=m.raw,
                             normalized=inbound_to_json(m)) for key, m in fresh.items() if key not in known]
        await InboundEvent.bulk_create(rows, batch_size=500)
    new_keys = [r.provider_id for r in rows]
    return list(await InboundEvent.filter(provider_id__in=new_keys).order_by("id").values_list("id", flat=True))


def visible_text(msg: InboundMessage) -> str:
    """Only the words the sender wrote: quoted history and signatures go (reply_text)."""
    if msg.channel is ChannelKind.SMS:
        return (msg.text or "").strip()
    if msg.text is not None and msg.text.strip():
        return extract_reply(msg.text)
    return extract_reply_from_html(msg.html or "")


class InboundProcessor:
    """Routes stored events in the background, one at a time per process.

    A few consumers, not a task per event: with SQLite every query goes through one connection, and
    hundreds of concurrent routing transactions would starve the webhooks that store new items.
    PostgreSQL gets several consumers per process, and more processes (events are claimed with a
    lease, so any number of them can share the work).
    """

    def __init__(self, reply_domains: set[str], *, on_queued: Callable[[], None] | None = None,
                 on_posted: Callable[[int], Awaitable[None]] | None = None,
                 concurrency: int = 1, yield_to_intake: bool = False) -> None:
        self.reply_domains = {d.lower() for d in reply_domains}
        self.on_queued = on_queued  # told when a reply queued deliveries (wakes the dispatcher)
        self.on_posted = on_posted  # told, after the commit, which conversation got a message (live pages)
        self.concurrency = concurrency  # 1 on SQLite; a few on PostgreSQL, whose pool has connections
        # SQLite has one connection: a routing transaction holds it, and a webhook waiting to store a
        # new item waits for it. There, routing steps aside while items are arriving.
        self.yield_to_intake = yield_to_intake
        self._last_intake = 0.0
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._consumers: set[asyncio.Task[None]] = set()

    def schedule(self, event_id: int) -> None:
        """Process soon, in this process; a crash before that leaves it for `sweep`."""
        self._last_intake = time.monotonic()
        self._queue.put_nowait(event_id)
        if len(self._consumers) < self.concurrency:
            task = asyncio.create_task(self._consume(), name="inbound-processor")
            self._consumers.add(task)
            task.add_done_callback(self._consumers.discard)

    async def wait_idle(self) -> None:
        """Return when everything scheduled so far is processed (tests, shutdown)."""
        await self._queue.join()

    async def _consume(self) -> None:
        last_routed = time.monotonic()
        while not self._queue.empty():
            if self.yield_to_intake:
                # Webhooks first: while items are arriving (one in the last 20 ms) routing waits, but
                # never more than 100 ms between two routed items, so a flood only delays it.
                now = time.monotonic()
                if now - self._last_intake < 0.02 and now - last_routed < 0.1:
                    await asyncio.sleep(0.01)
                    continue
            event_id = self._queue.get_nowait()
            last_routed = time.monotonic()
            try:
                await self.process(event_id)
            except Exception:
                log.exception("processing inbound event %s failed; the sweeper will retry it", event_id)
            finally:
                self._queue.task_done()

    async def sweep(self, older_than: timedelta = timedelta(seconds=10)) -> int:
        """Process events left in `received` (a crash, a restart). Returns how many were done."""
        cutoff = utcnow() - older_than
        ids = await InboundEvent.filter(outcome=InboundOutcome.RECEIVED, received_at__lte=cutoff).filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=utcnow())).order_by("id").limit(500).values_list("id", flat=True)
        done = 0
        for event_id in ids:
            done += await self.process(event_id)
        return done

    async def process(self, event_id: int) -> bool:
        """Decide the outcome of one stored event; False if another worker holds it or it is done."""
        now = utcnow()
        claimable = Q(id=event_id, outcome=InboundOutcome.RECEIVED) & (
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        if not await InboundEvent.filter(claimable).update(claimed_until=now + LEASE):
            return False
        event = await InboundEvent.get(id=event_id)
        msg = inbound_from_json(event.normalized or {}, raw=event.payload)
        async with in_transaction():
            outcome, reason = await self._decide(event, msg)
            event.outcome, event.reason = outcome, (reason or "")[:500] or None
            event.processed_at, event.claimed_until = utcnow(), None
            await event.save(update_fields=["outcome", "reason", "processed_at", "claimed_until", "message_id",
                                            "conversation_id", "school_id"])
        log.info("inbound %s event %s from %s: %s%s", msg.channel.value, event.id, redact(msg.sender),
                 outcome.value, f" ({reason})" if reason else "")
        if outcome is InboundOutcome.ROUTED:
            if self.on_queued is not None:
                self.on_queued()
            if self.on_posted is not None and event.conversation_id is not None:
                try:
                    await self.on_posted(event.conversation_id)
                except Exception:  # the reply is stored and routed; an open page sees it on reload
                    log.exception("could not signal live pages about conversation %s", event.conversation_id)
        return True

    async def sweep_forever(self, stop: asyncio.Event, interval: float = 15.0) -> None:
        """The worker's safety net: process what a crashed web process stored but never routed."""
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping inbound events failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass

    async def _decide(self, event: InboundEvent, msg: InboundMessage) -> tuple[InboundOutcome, str | None]:
        oversized = next((p for p in msg.problems if p.startswith("oversized")), None)
        if oversized:
            return InboundOutcome.REJECTED, oversized  # kept (truncated) for a person to look at
        if msg.bounce is not None:
            marked = await apply_bounce(msg.bounce)
            return InboundOutcome.BOUNCE, f"{msg.bounce.status} {msg.bounce.action}: {marked} address(es) marked"
        if msg.auto_reply:
            return InboundOutcome.AUTO_REPLY, msg.auto_reply
        if msg.channel is ChannelKind.EMAIL and msg.sender.rpartition("@")[2] in self.reply_domains:
            return InboundOutcome.REJECTED, "loop: mail from our own reply domain"
        if msg.channel is ChannelKind.EMAIL and msg.provider_id.rpartition("@")[2].rstrip(">").lower() in self.reply_domains:
            # One of our own e-mails redirected back to its Reply-To (a guardian's "redirect all"
            # rule keeps our Message-ID). SMTP_FROM may be on another domain than the reply domain,
            # so the From check above does not catch it; posting it would echo staff words as a reply.
            return InboundOutcome.REJECTED, "loop: our own message came back (its Message-ID is ours)"
        resolution = await resolve(msg)
        if isinstance(resolution, Unresolved):
            event.school_id = event.school_id or await self._guess_school(msg)
            return InboundOutcome.UNMATCHED, resolution.reason
        text = visible_text(msg)
        if not text:
            event.conversation_id = resolution.conversation_id
            event.school_id = (await Conversation.get(id=resolution.conversation_id)).school_id
            return InboundOutcome.UNMATCHED, "no visible text (only quoted history or a signature)"
        message = await post_inbound(resolution, msg, text)
        event.message_id, event.conversation_id = message.id, resolution.conversation_id
        event.school_id = message.conversation.school_id
        return InboundOutcome.ROUTED, resolution.routed_by.value

    async def _guess_school(self, msg: InboundMessage) -> int | None:
        """Which school's triage list an unmatched item belongs on, if that can be told safely."""
        if msg.channel is ChannelKind.SMS and msg.recipients:
            school = await school_for_number(msg.recipients[0])
            return school.id if school else None
        kind = ContactKind.EMAIL
        users = await ContactPoint.filter(kind=kind, address=msg.sender).values_list("user_id", flat=True)
        schools = set(await Membership.filter(user_id__in=list(users)).values_list("school_id", flat=True))
        if schools:
            return schools.pop() if len(schools) == 1 else None
        # A sender not in the directory (a grandparent, a new address): the school the mail was
        # addressed to, told by its own reply domain, or the only school on the deployment's one.
        # Without this the item had no school and no triage list ever showed it.
        domains = {address.rpartition("@")[2] for address in msg.recipients}
        own = set(await School.filter(reply_domain__in=list(domains)).values_list("id", flat=True))
        if own:
            return own.pop() if len(own) == 1 else None
        if domains & self.reply_domains:
            shared = await School.filter(Q(reply_domain__isnull=True) | Q(reply_domain__in=list(self.reply_domains))
                                         ).limit(2).values_list("id", flat=True)
            return shared[0] if len(shared) == 1 else None
        return None


async def post_inbound(resolution: Resolution, msg: InboundMessage, text: str) -> Message:
    """The reply becomes a Message; a closed conversation reopens; the staff are told."""
    conversation = await Conversation.get(id=resolution.conversation_id)
    reopened = conversation.state is ConversationState.CLOSED
    conversation.state, conversation.last_message_at = ConversationState.OPEN, utcnow()
    await conversation.save(update_fields=["state", "last_message_at"])
    message = await Message.create(
        conversation=conversation, author_id=resolution.user_id, body=text, original=msg.raw,
        origin=Origin.SMS if msg.channel is ChannelKind.SMS else Origin.EMAIL, direction=Direction.INBOUND,
        routed_by=resolution.routed_by, sender_unverified=resolution.sender_unverified,
    )
    participants = {p.user_id: p for p in await Participant.filter(conversation=conversation)}
    author = participants.get(resolution.user_id)  # type: ignore[arg-type]
    if author is not None and author.last_channel != msg.channel.value:
        # Staff replies go back over the channel the guardian last used (DESIGN section 5).
        author.last_channel = msg.channel.value
        await author.save(update_fields=["last_channel"])
    await forward_reply(conversation, message, participants, reopened=reopened)
    return message


async def attach_to_conversation(event: InboundEvent, conversation: Conversation) -> Message:
    """Triage: staff put an unmatched item into a conversation of their school."""
    msg = inbound_from_json(event.normalized or {}, raw=event.payload)
    kind = ContactKind.PHONE if msg.channel is ChannelKind.SMS else ContactKind.EMAIL
    holders = await ContactPoint.filter(kind=kind, address=msg.sender).values_list("user_id", flat=True)
    author = await Participant.filter(conversation=conversation, user_id__in=list(holders)).first()
    resolution = Resolution(conversation.id, author.user_id if author else None, RoutedBy.TRIAGE,
                            sender_unverified=author is None)
    async with in_transaction():
        # Claim the item first: of two attaches racing (a double click, two admins), one wins.
        claimed = await InboundEvent.filter(id=event.id, outcome=InboundOutcome.UNMATCHED).update(
            outcome=InboundOutcome.ROUTED, reason="attached by staff", conversation_id=conversation.id,
            processed_at=utcnow())
        if not claimed:
            raise Conflict(f"inbound item {event.id} was already dealt with")
        message = await post_inbound(resolution, msg, visible_text(msg) or (msg.text or "").strip() or "(no text)")
        await InboundEvent.filter(id=event.id).update(message_id=message.id)
    return message
