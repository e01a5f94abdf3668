"""Triage: inbound items no conversation could be told for, and putting one into a conversation.

Shared by the admin API (/api/v1/inbound) and the staff admins' page (/triage). An item can be
attached once, only while it is `unmatched`, and only to a conversation of its own school.
"""
from __future__ import annotations

from gateway.errors import Conflict, NotFound
from gateway.threads.inbound import attach_to_conversation
from gateway.threads.models import Conversation, InboundEvent, InboundOutcome, Message

TRIAGED_CHANNELS = ("sms", "email")


async def attach_unmatched(school_id: int, event_id: int | None, conversation_id: int | None) -> Message:
    """Put unmatched item `event_id` of this school into `conversation_id`; returns the new message."""
    event = await InboundEvent.get_or_none(id=event_id, school_id=school_id) if event_id else None
    if event is None or event.channel not in TRIAGED_CHANNELS:
        raise NotFound(f"no inbound item {event_id!r} in this school")
    if event.outcome is not InboundOutcome.UNMATCHED:
        raise Conflict(f"inbound item {event.id} is {event.outcome.value}; only unmatched items can be attached")
    conversation = await Conversation.get_or_none(id=conversation_id, school_id=school_id) if conversation_id else None
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id} in this school")
    return await attach_to_conversation(event, conversation)
