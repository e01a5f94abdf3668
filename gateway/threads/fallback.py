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
    if failed.message_id is None:
        return await _link_fall_back(failed, now)
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


async def _link_fall_back(failed: Delivery, now: datetime) -> Delivery | None:
    """The same for a login link (an invitation or sign-in link): same token, other channel, and the
    campaign's invitation follows the new delivery."""
    from gateway.directory.models import School
    from gateway.invites.models import Invitation
    from gateway.invites.outbox import sms_sender

    other = OTHER[failed.channel]
    if failed.login_token_id is None or await Delivery.filter(
            login_token_id=failed.login_token_id, recipient_id=failed.recipient_id, channel=other).exists():
        return None
    contacts = [Contact(cp.kind, cp.address, cp.problem) for cp in await ContactPoint.filter(user_id=failed.recipient_id)]
    address = usable_address(contacts, other)
    if address is None:
        return None
    sender = None
    if other == "sms":
        school = await School.get(id=failed.school_id)
        sender = sms_sender(school.sms_numbers or [], failed.recipient_id)
        if sender is None:
            return None  # the school has no number to text from
    created = await Delivery.create(
        message_id=None, login_token_id=failed.login_token_id, school_id=failed.school_id, urgent=failed.urgent,
        recipient_id=failed.recipient_id, channel=other, address=address, sender=sender,
        status=DeliveryStatus.QUEUED, next_attempt_at=now)
    await Invitation.filter(delivery_id=failed.id).update(delivery_id=created.id, channel=other)
    return created
