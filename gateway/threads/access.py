"""Who may open a conversation, and which of its messages each person sees.

- Staff of the conversation's school who take part in it see everything: every message, who
  received it, by which channel, and how delivery went. Staff admins see every conversation of
  their school (triage needs it) with the same view.
- A guardian or student who takes part sees what the staff wrote, what they wrote themselves and
  what their own family wrote (the guardians and students linked to the same students). An
  announcement reaches many families and replies to it go to the staff only: no family ever sees
  another family's words, names or addresses (DESIGN 4, "families only ever hear from staff").
- Anyone else gets "not found", never "forbidden": a conversation id reveals nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.directory.models import Membership, Relationship, Role, User
from gateway.errors import NotFound
from gateway.threads.models import Conversation, ConversationKind, Participant


@dataclass(frozen=True)
class ThreadAccess:
    conversation: Conversation
    user_id: int
    participant: Participant | None   # None for an admin reading a conversation they are not in
    staff: Membership | None          # the viewer's staff membership in this school, if any
    family: frozenset[int] | None     # whose words a family member sees besides staff; None: all

    @property
    def sees_everything(self) -> bool:
        return self.family is None

    @property
    def may_reply(self) -> bool:
        """Staff always; a family member who takes part, except in a newsletter (sent by e-mail to
        everyone: there is nobody in particular to answer)."""
        if self.staff is not None:
            return True
        return self.participant is not None and self.conversation.kind is not ConversationKind.NEWSLETTER

    def may_see(self, author_id: int | None, author_is_staff: bool, inbound: bool) -> bool:
        """Staff words, and the family's own; an inbound message with no known author (an unknown
        number, a reply attached by staff) could be anyone's, so families never see it."""
        if self.family is None or author_is_staff:
            return True
        if author_id is None:
            return not inbound
        return author_id in self.family


async def family_of(user_id: int, school_id: int) -> frozenset[int]:
    """The person, the students they are guardian of (or are), and those students' guardians."""
    students = set(await Relationship.filter(school_id=school_id, guardian_id=user_id).values_list("student_id", flat=True))
    students.add(user_id)  # a student is in their own family (a no-op for a guardian)
    guardians = await Relationship.filter(school_id=school_id, student_id__in=list(students)).values_list(
        "guardian_id", flat=True)
    return frozenset(students | set(guardians) | {user_id})


async def open_thread(user_id: int, conversation_id: int | None) -> ThreadAccess:
    """The conversation as `user_id` may see it; NotFound when they may not see it at all."""
    conversation = await Conversation.get_or_none(id=conversation_id) if conversation_id else None
    if conversation is None:
        raise NotFound("no such conversation")
    participant = await Participant.get_or_none(conversation_id=conversation.id, user_id=user_id)
    staff = await Membership.get_or_none(school_id=conversation.school_id, user_id=user_id, role=Role.STAFF)
    if staff is not None and (participant is not None or staff.is_admin):
        return ThreadAccess(conversation, user_id, participant, staff, None)
    if participant is None:
        raise NotFound("no such conversation")
    if participant.role == Role.STUDENT.value and not await User.exists(id=user_id, login_enabled=True):
        raise NotFound("no such conversation")  # a student whose login was disabled
    return ThreadAccess(conversation, user_id, participant, None, await family_of(user_id, conversation.school_id))
