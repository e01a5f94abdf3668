"""Choosing which of the school's numbers texts a guardian (DESIGN section 4).

A reply SMS carries only (their phone, our number), so a guardian's concurrently open conversations
must each use a different number of ours: then the pair names the conversation (SmsRoute). The
choice, for a (phone, conversation):
1. the number already routed to this conversation for this phone;
2. else a number with no route for this phone, or whose route leads to a closed conversation;
3. else the least recently used number, whose route moves to this conversation (with a pool of one
   number this is always the case, and inbound routing falls back to "most recent conversation").
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from gateway.threads.models import ConversationState, SmsRoute


@dataclass
class _Route:
    id: int | None
    number: str
    conversation_id: int
    open: bool
    last_used_at: datetime


async def assign_sms_senders(
    school_id: int, pool: list[str], targets: Iterable[tuple[str, int, int]], now: datetime
) -> dict[tuple[str, int], str]:
    """Pick our number for each (phone, conversation_id, user_id) and record the routes (with the
    person texted, so a reply is credited without another lookup); call in a transaction.
    Returns {(phone, conversation_id): our number}."""
    targets = list({(phone, cid): (phone, cid, uid) for phone, cid, uid in targets}.values())
    if not pool or not targets:
        return {}
    phones = list({phone for phone, _, _ in targets})
    routes: dict[str, dict[str, _Route]] = {}
    rows = await SmsRoute.filter(school_id=school_id, phone__in=phones, our_number__in=pool).values(
        "id", "phone", "our_number", "conversation_id", "last_used_at", "conversation__state"
    )
    for row in rows:
        routes.setdefault(row["phone"], {})[row["our_number"]] = _Route(
            row["id"], row["our_number"], row["conversation_id"],
            row["conversation__state"] == ConversationState.OPEN, row["last_used_at"],
        )

    chosen: dict[tuple[str, int], str] = {}
    touched: dict[tuple[int, int], list[int]] = {}  # (conversation, user) -> existing route ids to point there
    created: list[SmsRoute] = []
    for phone, conversation_id, user_id in targets:
        mine = routes.setdefault(phone, {})
        route = next((r for r in mine.values() if r.conversation_id == conversation_id), None)
        if route is None:
            free = next((n for n in pool if n not in mine or not mine[n].open), None)
            number = free or min(mine.values(), key=lambda r: r.last_used_at).number
            route = mine.get(number)
            if route is None:
                route = mine[number] = _Route(None, number, conversation_id, True, now)
                created.append(SmsRoute(
                    school_id=school_id, phone=phone, our_number=number,
                    conversation_id=conversation_id, user_id=user_id, last_used_at=now,
                ))
            route.conversation_id, route.open = conversation_id, True
        route.last_used_at = now
        if route.id is not None:
            touched.setdefault((conversation_id, user_id), []).append(route.id)
        chosen[(phone, conversation_id)] = route.number

    for (conversation_id, user_id), ids in touched.items():
        await SmsRoute.filter(id__in=ids).update(conversation_id=conversation_id, user_id=user_id, last_used_at=now)
    if created:
        await SmsRoute.bulk_create(created, batch_size=1000)
    return chosen


def link_sender(pool: Sequence[str], user_id: int) -> str | None:
    """Which of the school's numbers texts a sign-in or invitation link to this person: spread over
    the pool (each number has its own rate limit), the same number for the same person every time.
    Links belong to no conversation, so they take no SmsRoute."""
    return pool[user_id % len(pool)] if pool else None
