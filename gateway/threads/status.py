"""The delivery status machine: it only moves forward, and provider errors are kept.

Ranks: queued (0) → sent (1) → delivered / undelivered / failed (2); suppressed is final at compose.
A late or repeated callback (Twilio may send "sent" after "delivered", and retries callbacks) never
moves a delivery back. Updates are conditional UPDATEs, so two racing callbacks cannot regress it.
"""
from __future__ import annotations

from datetime import datetime, timezone

from gateway.channels.base import ContactProblem, DeliveryStatus, StatusUpdate
from gateway.directory.models import ContactKind, ContactPoint
from gateway.threads.models import Delivery

RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.UNDELIVERED: 2,
    DeliveryStatus.FAILED: 2,
    DeliveryStatus.SUPPRESSED: 2,
}


def below(status: DeliveryStatus) -> list[DeliveryStatus]:
    """The statuses a delivery may move from into `status`."""
    return [s for s, rank in RANK.items() if rank < RANK[status]]


async def apply_status_update(update: StatusUpdate, *, delivery_id: int | None = None) -> Delivery | None:
    """Record a provider's report; returns the delivery it concerns (None if unknown).

    The delivery is found by our id (carried in the StatusCallback URL) when given, else by the
    provider id. Both must agree when both are known: a callback for another message is ignored.
    """
    query = Delivery.filter(id=delivery_id) if delivery_id is not None else Delivery.filter(provider_id=update.provider_id)
    delivery = await query.first()
    if delivery is None:
        return None
    if delivery.provider_id and delivery.provider_id != update.provider_id:
        return None
    # updated_at by hand: QuerySet.update() skips auto_now, and open thread pages watch it.
    changes: dict[str, object] = {"status": update.status, "updated_at": datetime.now(timezone.utc)}
    if not delivery.provider_id:
        changes["provider_id"] = update.provider_id  # the callback beat our own write of the SID
    if update.error_code:
        changes["error_code"] = update.error_code[:32]
        changes["error_reason"] = (update.error_reason or update.raw_status)[:500]
    moved = await Delivery.filter(id=delivery.id, status__in=below(update.status)).update(**changes)
    if not moved and "provider_id" in changes:
        await Delivery.filter(id=delivery.id, provider_id=None).update(provider_id=update.provider_id)
    if moved and update.problem is not None and delivery.address:
        await mark_contact_problem(delivery.recipient_id, delivery.channel, delivery.address, update.problem,
                                   update.error_reason or update.error_code or "")
    await delivery.refresh_from_db()
    return delivery


async def mark_contact_problem(user_id: int, channel: str, address: str, problem: ContactProblem, reason: str) -> None:
    """Remember that `address` of this user cannot be used, so later messages fall back or suppress."""
    kind = ContactKind.PHONE if channel == "sms" else ContactKind.EMAIL
    now = datetime.now(timezone.utc)
    points = ContactPoint.filter(user_id=user_id, kind=kind, address=address)
    if problem is ContactProblem.OPTED_OUT:
        await points.filter(opted_out_at=None).update(opted_out_at=now)
    elif problem is ContactProblem.BOUNCING:
        await points.filter(bouncing_at=None).update(bouncing_at=now)
    else:
        await points.update(unreachable_reason=(reason or "unreachable")[:200])
