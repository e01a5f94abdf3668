"""Passing an inbound reply on to the people who should read it.

A guardian's (or student's) reply goes to the conversation's staff only: families only ever hear
from staff, never another family's words or addresses. A staff member answering from their phone
or mail client reaches everyone else in the conversation, exactly as a reply from the API would.
Each delivery goes out on the channel the recipient's preference and last use choose, with a reply
address of their own.
"""
from __future__ import annotations

from datetime import datetime, timezone

from gateway.directory.models import AuditLog, School
from gateway.threads.compose import load_recipients, routes_for, write_deliveries
from gateway.threads.models import Conversation, Message, Participant


async def forward_reply(conversation: Conversation, message: Message, participants: dict[int, Participant], *,
                        reopened: bool = False) -> int:
    """Queue deliveries of an inbound `message` to the right `participants` (by user id)."""
    if reopened:
        await AuditLog.create(school_id=conversation.school_id, actor=f"message:{message.id}",
                              action="conversation.reopened", target=f"conversation:{conversation.id}")
    participants = dict(participants)
    author = participants.pop(message.author_id, None)  # type: ignore[arg-type]
    from_staff = author is not None and author.role == "staff"
    readers = {uid: p for uid, p in participants.items() if from_staff or p.role == "staff"}
    if not readers:
        return 0
    school = await School.get(id=conversation.school_id)
    people = await load_recipients({uid: p.role for uid, p in readers.items()})
    plans = [(conversation, message, person,
              routes_for(conversation.kind.value, person, readers[person.user_id].last_channel, school))
             for person in people]
    rows = await write_deliveries(school, plans, urgent=False, now=datetime.now(timezone.utc))
    return len(rows)
