"""What signed-in people do to conversations from the web pages, each in one transaction.

Staff replies go through gateway.threads.compose (the same path as the API). Here: a guardian's or
student's reply, a new conversation a family member starts with a teacher, and closing/reopening.
A family member's words reach only the conversation's staff (gateway.threads.notify).
"""
from __future__ import annotations

from tortoise.transactions import in_transaction

from gateway.clock import utcnow
from gateway.directory.models import (
    AuditLog,
    Membership,
    Relationship,
    Role,
    SectionMember,
    User,
)
from gateway.errors import InvalidInput, NotFound
from gateway.threads.access import ThreadAccess
from gateway.threads.compose import new_reply_token
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    ConversationState,
    Direction,
    Message,
    Origin,
    Participant,
    ReplyToken,
    RoutedBy,
)
from gateway.threads.notify import forward_reply


async def post_family_reply(access: ThreadAccess, body: str, *, submission_key: str | None = None) -> Message:
    """A guardian or student answers in the thread page; the staff are told by their channel."""
    if access.participant is None or not access.may_reply:
        raise InvalidInput("this conversation does not take replies", code="no_replies")
    async with in_transaction():
        conversation = await Conversation.get(id=access.conversation.id)
        reopened = conversation.state is ConversationState.CLOSED
        conversation.state, conversation.last_message_at = ConversationState.OPEN, utcnow()
        await conversation.save(update_fields=["state", "last_message_at"])
        message = await Message.create(conversation=conversation, author_id=access.user_id, body=body,
                                       origin=Origin.WEB, direction=Direction.INBOUND, routed_by=RoutedBy.WEB,
                                       submission_key=submission_key)
        participants = {p.user_id: p for p in await Participant.filter(conversation=conversation)}
        await Participant.filter(id=access.participant.id).update(last_read_at=utcnow())
        await forward_reply(conversation, message, participants, reopened=reopened)
    return message


async def teachers_for(user_id: int, school_id: int) -> list[tuple[Membership, list[str]]]:
    """The staff a family member may write to: the teachers of their children's (or their own) sections.

    Returns (staff membership with user, names of the students they teach in common), by name.
    """
    students = set(await Relationship.filter(school_id=school_id, guardian_id=user_id).values_list("student_id", flat=True))
    if await Membership.exists(school_id=school_id, user_id=user_id, role=Role.STUDENT):
        students.add(user_id)
    if not students:
        return []
    rows = await SectionMember.filter(user_id__in=list(students), section__school_id=school_id).values_list(
        "section_id", "user_id")
    section_students: dict[int, set[int]] = {}
    for section_id, student_id in rows:
        section_students.setdefault(section_id, set()).add(student_id)
    members = await SectionMember.filter(section_id__in=list(section_students)).values_list("section_id", "user_id")
    staff = {m.user_id: m for m in await Membership.filter(
        school_id=school_id, role=Role.STAFF, user_id__in=list({uid for _, uid in members})).select_related("user")}
    taught: dict[int, set[int]] = {}
    for section_id, uid in members:
        if uid in staff:
            taught.setdefault(uid, set()).update(section_students[section_id])
    names = dict(await User.filter(id__in=list(students)).values_list("id", "name"))
    return sorted(((staff[uid], sorted(names[s] for s in kids)) for uid, kids in taught.items()),
                  key=lambda pair: pair[0].user.name.casefold())


async def start_family_conversation(user_id: int, school_id: int, teacher_user_id: int, subject: str,
                                    body: str, *, secret_key: str, submission_key: str | None = None) -> Conversation:
    """A guardian or student starts a private conversation with one of their teachers."""
    allowed = {m.user_id for m, _ in await teachers_for(user_id, school_id)}
    if teacher_user_id not in allowed:
        raise NotFound("that teacher is not one of your children's teachers")
    own = await Membership.filter(school_id=school_id, user_id=user_id).exclude(role=Role.STAFF).first()
    if own is None:
        raise NotFound("only guardians and students start conversations with teachers")
    now = utcnow()
    async with in_transaction():
        conversation = await Conversation.create(school_id=school_id, kind=ConversationKind.CONVERSATION,
                                                 subject=subject, created_by_id=user_id, last_message_at=now)
        teacher = await Participant.create(conversation=conversation, user_id=teacher_user_id, role="staff",
                                           is_owner=True)
        author = await Participant.create(conversation=conversation, user_id=user_id, role=own.role.value,
                                          last_read_at=now)
        await ReplyToken.bulk_create([new_reply_token(conversation.id, teacher_user_id, secret_key),
                                      new_reply_token(conversation.id, user_id, secret_key)])
        message = await Message.create(conversation=conversation, author_id=user_id, body=body, origin=Origin.WEB,
                                       direction=Direction.INBOUND, routed_by=RoutedBy.WEB,
                                       submission_key=submission_key)
        await forward_reply(conversation, message, {teacher_user_id: teacher, user_id: author})
    return conversation


async def set_state(access: ThreadAccess, state: ConversationState, actor_user_id: int) -> bool:
    """Staff close or reopen a conversation (audit-logged). False when it already was in that state."""
    async with in_transaction():
        changed = await Conversation.filter(id=access.conversation.id).exclude(state=state).update(state=state)
        if changed:
            action = "conversation.closed" if state is ConversationState.CLOSED else "conversation.reopened"
            await AuditLog.create(school_id=access.conversation.school_id, actor=f"user:{actor_user_id}",
                                  action=action, target=f"conversation:{access.conversation.id}")
    return bool(changed)
