"""Falling back to the recipient's other channel (DESIGN section 5).

When an e-mail bounces or a phone opts out after a message was written, the same message goes to
the recipient's other channel, once, if they have a usable address there.
"""
from __future__ import annotations

from datetime import datetime

from gateway.channels.base import DeliveryStatus
from gateway.directory.models import ContactPoint, School
from gateway.threads.channel_choice import OTHER, Contact, usable_address
from gateway.threads.models import Delivery, Message
from gateway.threads.sms_pool import assign_sms_senders, link_sender


async def fall_back(failed: Delivery, now: datetime) -> Delivery | None:
    """Queue what `failed` carried on the other channel; None when there is no usable address there,
    the school cannot text, or it was queued there already."""
    other = OTHER[failed.channel]
    same_item = ({"message_id": failed.message_id} if failed.message_id is not None
                 else {"login_token_id": failed.login_token_id})
    if None in same_item.values() or await Delivery.filter(
            recipient_id=failed.recipient_id, channel=other, **same_item).exists():
        return None
    contacts = [Contact(cp.kind, cp.address, cp.problem) for cp in await ContactPoint.filter(user_id=failed.recipient_id)]
    address = usable_address(contacts, other)
    if address is None:
        return None
    if failed.message_id is not None:
        return await _message_fall_back(failed, other, address, now)
    return await _link_fall_back(failed, other, address, now)


async def _message_fall_back(failed: Delivery, other: str, address: str, now: datetime) -> Delivery | None:
    sender = None
    if other == "sms":
        message = await Message.get(id=failed.message_id).select_related("conversation__school")
        school = message.conversation.school
        target = (address, message.conversation_id, failed.recipient_id)
        sender = (await assign_sms_senders(school.id, list(school.sms_numbers), [target], now)).get(target[:2])
        if sender is None:
            return None  # the school has no number to text from
    return await Delivery.create(message_id=failed.message_id, recipient_id=failed.recipient_id, channel=other,
                                 address=address, sender=sender, status=DeliveryStatus.QUEUED, next_attempt_at=now)


async def _link_fall_back(failed: Delivery, other: str, address: str, now: datetime) -> Delivery | None:
    """An invitation or sign-in link: the same token on the other channel, and the campaign's
    invitation follows the new delivery."""
    # Imported here: invites builds on threads, and only this fallback needs to look back up.
    from gateway.invites.models import Invitation

    sender = None
    if other == "sms":
        school = await School.get(id=failed.school_id)
        sender = link_sender(school.sms_numbers or [], failed.recipient_id)
        if sender is None:
            return None  # the school has no number to text from
    created = await Delivery.create(
        message_id=None, login_token_id=failed.login_token_id, school_id=failed.school_id, urgent=failed.urgent,
        recipient_id=failed.recipient_id, channel=other, address=address, sender=sender,
        status=DeliveryStatus.QUEUED, next_attempt_at=now)
    await Invitation.filter(delivery_id=failed.id).update(delivery_id=created.id, channel=other)
    return created
