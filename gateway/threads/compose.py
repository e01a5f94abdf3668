"""Writing outbound messages: a conversation's Message and all its Deliveries in one transaction.

Sending happens later, in the dispatcher; here we only decide who gets what on which channel
(gateway.threads.channel_choice), when (quiet hours), and from which of our numbers (sms_pool).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from tortoise.transactions import in_transaction

from gateway.channels.base import DeliveryStatus
from gateway.clock import utcnow
from gateway.directory.models import (
    ChannelPreference,
    ContactPoint,
    Membership,
    Role,
    School,
    Section,
    SectionMember,
    User,
)
from gateway.errors import InvalidInput, NotFound
from gateway.threads.addresses import hash_token, new_salt, reply_token
from gateway.threads.channel_choice import Contact, Route, choose_routes
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    ConversationState,
    Delivery,
    Direction,
    Message,
    Origin,
    Participant,
    ReplyToken,
)
from gateway.threads.quiet_hours import quiet_until
from gateway.threads.sms_pool import assign_sms_senders

BATCH = 1000


@dataclass(frozen=True)
class RecipientSpec:
    users: list[str] = field(default_factory=list)      # external ids
    sections: list[str] = field(default_factory=list)   # section names
    roles: list[Role] = field(default_factory=list)     # everyone with the role


@dataclass(frozen=True)
class ComposeResult:
    conversation_ids: list[int]
    message_ids: list[int]
    deliveries: int
    suppressed: int


@dataclass
class Recipient:
    user_id: int
    role: str
    preference: ChannelPreference
    newsletters_unsubscribed: bool
    contacts: list[Contact]



async def find_staff(school: School, external_id: str) -> Membership:
    membership = await Membership.get_or_none(school=school, external_id=external_id).select_related("user")
    if membership is None:
        raise NotFound(f"no person with external_id {external_id!r} in this school", code="unknown_sender")
    if membership.role is not Role.STAFF:
        raise InvalidInput(f"{external_id!r} is not staff; only staff send communications", code="sender_not_staff")
    return membership


async def resolve_recipients(school: School, spec: RecipientSpec, *, exclude: int | None = None) -> dict[int, str]:
    """user id → membership role of everyone `spec` names, in this school only."""
    found: dict[int, str] = {}
    if spec.users:
        rows = await Membership.filter(school=school, external_id__in=spec.users).values_list("external_id", "user_id", "role")
        known = {ext for ext, _, _ in rows}
        missing = [ext for ext in spec.users if ext not in known]
        if missing:
            raise InvalidInput(f"recipients.users: unknown external_id {missing[0]!r}", code="unknown_recipient")
        found.update({uid: role for _, uid, role in rows})
    if spec.sections:
        sections = dict(await Section.filter(school=school, name__in=spec.sections).values_list("name", "id"))
        missing = [name for name in spec.sections if name not in sections]
        if missing:
            raise InvalidInput(f"recipients.sections: unknown section {missing[0]!r}", code="unknown_section")
        member_ids = await SectionMember.filter(section_id__in=list(sections.values())).values_list("user_id", flat=True)
        rows = await Membership.filter(school=school, user_id__in=list(set(member_ids))).values_list("user_id", "role")
        found.update(dict(rows))
    if spec.roles:
        rows = await Membership.filter(school=school, role__in=list(spec.roles)).values_list("user_id", "role")
        found.update(dict(rows))
    found.pop(exclude, None)  # type: ignore[arg-type]
    return {uid: (role.value if isinstance(role, Role) else role) for uid, role in found.items()}


async def load_recipients(roles: dict[int, str]) -> list[Recipient]:
    ids = list(roles)
    contacts: dict[int, list[Contact]] = defaultdict(list)
    users: dict[int, dict] = {}
    for chunk in range(0, len(ids), BATCH):
        part = ids[chunk:chunk + BATCH]
        for row in await User.filter(id__in=part).values("id", "channel_preference", "newsletters_unsubscribed_at"):
            users[row["id"]] = row
        for cp in await ContactPoint.filter(user_id__in=part).order_by("id"):
            contacts[cp.user_id].append(Contact(cp.kind, cp.address, cp.problem))
    return [
        Recipient(
            uid, roles[uid], ChannelPreference(users[uid]["channel_preference"]),
            users[uid]["newsletters_unsubscribed_at"] is not None, contacts[uid],
        )
        for uid in ids
        if uid in users
    ]


async def plan_recipients(school: School, spec: RecipientSpec, kind: ConversationKind, *,
                          sender_user_id: int) -> list[tuple[Recipient, list[Route]]]:
    """Everyone `spec` names (never the sender) with the channels a new message of `kind` goes out
    on: the one decision both sending and the compose page's preview use, so a preview cannot differ
    from what is sent."""
    roles = await resolve_recipients(school, spec, exclude=sender_user_id)
    if not roles:
        raise InvalidInput("recipients: nobody matches (the sender is never a recipient)", code="no_recipients")
    return [(person, routes_for(kind.value, person, None, school)) for person in await load_recipients(roles)]


async def send_communication(
    school: School,
    *,
    sender_external_id: str,
    kind: ConversationKind,
    recipients: RecipientSpec,
    subject: str,
    body: str,
    urgent: bool = False,
    private: bool = False,
    origin: Origin = Origin.API,
    secret_key: str,
    submission_key: str | None = None,
) -> ComposeResult:
    """Create the conversation(s), the message(s) and every delivery, all in one transaction."""
    now = utcnow()
    async with in_transaction():
        sender = await find_staff(school, sender_external_id)
        planned = await plan_recipients(school, recipients, kind, sender_user_id=sender.user_id)
        groups = [[p] for p in planned] if private else [planned]

        conversations: list[Conversation] = []
        messages: list[Message] = []
        for group in groups:
            conversation = await Conversation.create(
                school=school, kind=kind, subject=subject, created_by_id=sender.user_id, last_message_at=now,
            )
            message = await Message.create(
                conversation=conversation, author_id=sender.user_id, body=body, origin=origin,
                direction=Direction.OUTBOUND, urgent=urgent, submission_key=None if messages else submission_key,
            )
            conversations.append(conversation)
            messages.append(message)

        participants: list[Participant] = []
        tokens: list[ReplyToken] = []
        for conversation, group in zip(conversations, groups):
            participants.append(Participant(conversation=conversation, user_id=sender.user_id, role="staff", is_owner=True))
            tokens.append(new_reply_token(conversation.id, sender.user_id, secret_key))
            for person, _routes in group:
                participants.append(Participant(conversation=conversation, user_id=person.user_id, role=person.role))
                tokens.append(new_reply_token(conversation.id, person.user_id, secret_key))
        await Participant.bulk_create(participants, batch_size=BATCH)
        await ReplyToken.bulk_create(tokens, batch_size=BATCH)

        plans = [
            (conversation, message, person, routes)
            for conversation, message, group in zip(conversations, messages, groups)
            for person, routes in group
        ]
        deliveries = await write_deliveries(school, plans, urgent=urgent, now=now)
    return ComposeResult(
        conversation_ids=[c.id for c in conversations],
        message_ids=[m.id for m in messages],
        deliveries=sum(1 for d in deliveries if d.status is not DeliveryStatus.SUPPRESSED),
        suppressed=sum(1 for d in deliveries if d.status is DeliveryStatus.SUPPRESSED),
    )


async def post_staff_reply(
    school: School,
    conversation_id: int,
    *,
    sender_external_id: str,
    body: str,
    origin: Origin = Origin.API,
    secret_key: str,
    submission_key: str | None = None,
) -> tuple[Message, int]:
    """A staff member writes in an existing conversation of this school; returns (message, deliveries)."""
    now = utcnow()
    async with in_transaction():
        conversation = await Conversation.get_or_none(id=conversation_id, school=school)
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id} in this school")
        sender = await find_staff(school, sender_external_id)
        members = {p.user_id: p for p in await Participant.filter(conversation=conversation)}
        if sender.user_id not in members:
            await Participant.create(conversation=conversation, user_id=sender.user_id, role="staff")
            await ReplyToken.create(**_token_fields(conversation.id, sender.user_id, secret_key))
        if conversation.state is ConversationState.CLOSED:
            conversation.state = ConversationState.OPEN  # a staff reply is a clear intent to talk again
        conversation.last_message_at = now
        await conversation.save(update_fields=["state", "last_message_at"])
        message = await Message.create(
            conversation=conversation, author_id=sender.user_id, body=body, origin=origin, direction=Direction.OUTBOUND,
            submission_key=submission_key,
        )
        others = {uid: p.role for uid, p in members.items() if uid != sender.user_id}
        people = await load_recipients(others)
        plans = [
            (conversation, message, person, routes_for(conversation.kind.value, person, members[person.user_id].last_channel, school))
            for person in people
        ]
        deliveries = await write_deliveries(school, plans, urgent=False, now=now)
    return message, len(deliveries)


def routes_for(kind: str, person: Recipient, last_channel: str | None, school: School) -> list[Route]:
    if kind == "newsletter" and person.newsletters_unsubscribed:
        return [Route("email", None, suppressed_reason="unsubscribed")]
    return choose_routes(
        kind, person.preference, person.contacts, last_channel=last_channel, sms_available=bool(school.sms_numbers)
    )


async def write_deliveries(
    school: School, plans: list[tuple[Conversation, Message, Recipient, list[Route]]], *, urgent: bool, now: datetime
) -> list[Delivery]:
    sms_targets = [(r.address, c.id, person.user_id) for c, _, person, routes in plans
                   for r in routes if r.channel == "sms" and r.address]
    senders = await assign_sms_senders(school.id, list(school.sms_numbers), sms_targets, now)
    quiet_end = None if urgent else quiet_until(now, school.timezone, school.quiet_hours_start, school.quiet_hours_end)
    rows: list[Delivery] = []
    for conversation, message, person, routes in plans:
        for route in routes:
            if route.suppressed:
                rows.append(Delivery(
                    message_id=message.id, recipient_id=person.user_id, channel=route.channel,
                    status=DeliveryStatus.SUPPRESSED, error_code="suppressed", error_reason=route.suppressed_reason,
                    next_attempt_at=None,
                ))
                continue
            is_sms = route.channel == "sms"
            rows.append(Delivery(
                message_id=message.id, recipient_id=person.user_id, channel=route.channel, address=route.address,
                sender=senders.get((route.address, conversation.id)) if is_sms else None,
                status=DeliveryStatus.QUEUED,
                next_attempt_at=(quiet_end or now) if is_sms else now,
            ))
    await Delivery.bulk_create(rows, batch_size=BATCH)
    return rows


def _token_fields(conversation_id: int, user_id: int, secret_key: str) -> dict[str, object]:
    salt = new_salt()
    return dict(
        conversation_id=conversation_id, user_id=user_id, salt=salt,
        token_hash=hash_token(reply_token(secret_key, salt)),
    )


def new_reply_token(conversation_id: int, user_id: int, secret_key: str) -> ReplyToken:
    return ReplyToken(**_token_fields(conversation_id, user_id, secret_key))
