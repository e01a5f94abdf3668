"""Which conversation an inbound reply belongs to, and who wrote it: the one routing decision.

E-mail, in this order; the first that resolves wins and `routed_by` records which (DESIGN 4):
1. A reply token in a recipient address (reply+TOKEN@...), looked for in Delivered-To,
   X-Original-To, To and Cc in that order (a token in a forwarded copy still routes).
2. Our Message-ID, or the token reference we add (<t.TOKEN@...>), in In-Reply-To or References:
   a relay that drops the plus-address still routes.
3. The sender's address, only when it points to exactly one open conversation among the people
   who have that address (a shared household mailbox can belong to two guardians). Ambiguous or
   nothing: unmatched, kept for triage, never guessed.
A reply whose From is not an address of the token's person is accepted (work addresses, shared
mailboxes) but marked sender_unverified.

SMS, in this order (keywords were handled before):
1. (their phone, our number) → SmsRoute → conversation (sms_pool gives each open conversation of
   a guardian its own number of ours).
2. The most recent conversation that sent this phone an SMS.
3. The sender's phone, only when it points to exactly one open conversation, as for e-mail: a
   conversation that reached a guardian only by e-mail can be answered by text.
4. Otherwise unmatched.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.channels.base import ChannelKind, InboundMessage
from gateway.directory.models import ContactKind, ContactPoint
from gateway.threads.addresses import find_tokens, hash_token
from gateway.threads.models import (
    Conversation,
    ConversationState,
    Delivery,
    Participant,
    ReplyToken,
    RoutedBy,
    SmsRoute,
)


@dataclass(frozen=True)
class Resolution:
    conversation_id: int
    user_id: int | None           # the author, when we can tell
    routed_by: RoutedBy
    sender_unverified: bool = False


@dataclass(frozen=True)
class Unresolved:
    reason: str


async def resolve(msg: InboundMessage) -> Resolution | Unresolved:
    if msg.channel is ChannelKind.SMS:
        return await resolve_sms(msg)
    return await resolve_email(msg)


# ---------------------------------------------------------------------------------------- e-mail


async def resolve_email(msg: InboundMessage) -> Resolution | Unresolved:
    for address in msg.recipients:
        found = await _by_token(find_tokens(address), msg.sender, RoutedBy.REPLY_TOKEN)
        if found:
            return found
    for reference in msg.references:
        found = await _by_token(find_tokens(reference), msg.sender, RoutedBy.REFERENCES)
        if found:
            return found
        found = await _by_message_id(reference, msg.sender)
        if found:
            return found
    return await _by_sender(ContactKind.EMAIL, msg.sender.lower())


async def _by_token(tokens: list[str], sender: str, routed_by: RoutedBy) -> Resolution | None:
    for token in tokens:
        row = await ReplyToken.get_or_none(token_hash=hash_token(token))
        if row is not None:
            return Resolution(row.conversation_id, row.user_id, routed_by,
                              sender_unverified=not await _has_address(row.user_id, sender))
    return None


async def _by_message_id(message_id: str, sender: str) -> Resolution | None:
    # Invitations and login links are deliveries without a conversation: they route nothing.
    delivery = await Delivery.filter(provider_id=message_id, channel="email", message_id__isnull=False).select_related(
        "message").first()
    if delivery is None:
        return None
    return Resolution(delivery.message.conversation_id, delivery.recipient_id, RoutedBy.REFERENCES,
                      sender_unverified=not await _has_address(delivery.recipient_id, sender))


async def _has_address(user_id: int, address: str) -> bool:
    return await ContactPoint.exists(user_id=user_id, kind=ContactKind.EMAIL, address=address.lower())


async def _by_sender(kind: ContactKind, sender: str) -> Resolution | Unresolved:
    """Step 3 for both channels: the sender's address or phone, only if it names one open conversation."""
    users = await ContactPoint.filter(kind=kind, address=sender).values_list("user_id", flat=True)
    if not users:
        return Unresolved("nothing to route by, and the sender is not in the directory")
    rows = await Participant.filter(user_id__in=list(set(users)), conversation__state=ConversationState.OPEN).values_list(
        "conversation_id", "user_id")
    people_by_conversation: dict[int, set[int]] = {}
    for conversation_id, user_id in rows:
        people_by_conversation.setdefault(conversation_id, set()).add(user_id)
    # A conversation both sharers of the address take part in cannot tell who wrote.
    candidates = {cid: next(iter(people)) for cid, people in people_by_conversation.items() if len(people) == 1}
    if len(candidates) != 1:
        what = "no open conversation" if not candidates else f"{len(candidates)} open conversations"
        return Unresolved(f"nothing to route by, and the sender points to {what}")
    [(conversation_id, user_id)] = candidates.items()
    return Resolution(conversation_id, user_id, RoutedBy.SENDER_FALLBACK)


# ---------------------------------------------------------------------------------------- SMS


async def resolve_sms(msg: InboundMessage) -> Resolution | Unresolved:
    phone, ours = msg.sender, msg.recipients[0] if msg.recipients else ""
    route = await SmsRoute.get_or_none(phone=phone, our_number=ours)
    if route is not None:
        user_id = route.user_id or await _texted_person(route.conversation_id, phone)
        return Resolution(route.conversation_id, user_id, RoutedBy.SMS_POOL)
    last = await Delivery.filter(channel="sms", address=phone, message_id__isnull=False).order_by("-id").select_related(
        "message").first()
    if last is not None:
        return Resolution(last.message.conversation_id, last.recipient_id, RoutedBy.SENDER_FALLBACK)
    # A conversation that reached them only by e-mail, answered by text (cross-channel threads).
    return await _by_sender(ContactKind.PHONE, phone)


async def _texted_person(conversation_id: int, phone: str) -> int | None:
    """Who in the conversation has this phone: the one we last texted there, else any participant."""
    last = await Delivery.filter(channel="sms", address=phone, message__conversation_id=conversation_id).order_by("-id").first()
    if last is not None:
        return last.recipient_id
    holders = await ContactPoint.filter(kind=ContactKind.PHONE, address=phone).values_list("user_id", flat=True)
    participant = await Participant.filter(conversation_id=conversation_id, user_id__in=list(holders)).first()
    return participant.user_id if participant else None


async def conversation_school(conversation_id: int) -> int:
    return (await Conversation.get(id=conversation_id)).school_id
