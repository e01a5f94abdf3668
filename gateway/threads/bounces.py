"""Delivery reports (RFC 3464 DSNs) about mail we sent.

A permanent failure (action "failed", status 5.x.x) marks the address bouncing, moves the delivery
it reports on to `undelivered` with the report's status, and falls back to SMS for that message.
A delay (4.x.x) changes nothing: the receiving side is still trying.
"""
from __future__ import annotations

from datetime import datetime, timezone

from gateway.channels.base import Bounce, ContactProblem, DeliveryStatus
from gateway.directory.models import ContactKind, ContactPoint
from gateway.threads.fallback import fall_back
from gateway.threads.models import Delivery
from gateway.threads.status import below, mark_contact_problem


async def apply_bounce(bounce: Bounce) -> int:
    """Record a DSN; returns how many contact points were marked bouncing."""
    if not bounce.permanent:
        return 0
    now = datetime.now(timezone.utc)
    reason = f"{bounce.status} {bounce.diagnostic}".strip()
    delivery = None
    if bounce.original_message_id:
        delivery = await Delivery.get_or_none(provider_id=bounce.original_message_id, channel="email")
    if delivery is not None and delivery.address:
        await mark_contact_problem(delivery.recipient_id, "email", delivery.address, ContactProblem.BOUNCING, reason)
        # The mailbox is gone for everyone who has it (a shared household address), as in the
        # no-Message-ID branch below: the other sharers' next e-mails would only bounce again.
        await ContactPoint.filter(kind=ContactKind.EMAIL, address=delivery.address.lower(), bouncing_at=None).update(
            bouncing_at=now)
        await Delivery.filter(id=delivery.id, status__in=below(DeliveryStatus.UNDELIVERED)).update(
            status=DeliveryStatus.UNDELIVERED, error_code=bounce.status[:32], error_reason=reason[:500])
        await fall_back(delivery, now)
        return 1
    # No Message-ID of ours in the report: trust the reported recipients, which are addresses we
    # mailed (a bounce for an address we never used changes nothing).
    marked = 0
    for address in bounce.recipients:
        marked += await ContactPoint.filter(kind=ContactKind.EMAIL, address=address.lower(), bouncing_at=None).update(
            bouncing_at=now)
    return marked
