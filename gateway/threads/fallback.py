"""Falling back to the recipient's other channel (DESIGN section 5).

When an e-mail bounces or a phone opts out after a message was written, the same message goes to
the recipient's other channel, once, if they have a usable address there.
"""
from __future__ import annotations

from datetime import datetime

from gateway.channels.base import DeliveryStatus
from gateway.directory.models import ContactPoint
from gateway.threads.channel_choice import OTHER, Contact, usable_address
from gateway.threads.models import Delivery, Message
from gateway.threads.sms_pool import assign_sms_senders


async def fall_back(failed: Delivery, now: datetime) -> Delivery | None:
    """Queue `failed`'s message on the other channel; None when there is none or it exists already."""
    other = OTHER[failed.channel]
    if await Delivery.filter(message_id=failed.message_id, recipient_id=failed.recipient_id, channel=other).exists():
        return None
    contacts = [Contact(cp.kind, cp.address, cp.problem) for cp in await ContactPoint.filter(user_id=failed.recipient_id)]
    address = usable_address(contacts, other)
    if address is None:
        return None
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
