"""Triage of inbound items (/api/v1/inbound): what could not be routed, and attaching it by hand."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.channels.base import inbound_from_json
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.threads.inbound import attach_to_conversation, visible_text
from gateway.threads.models import Conversation, InboundEvent, InboundOutcome
from gateway.web import keys
from gateway.web.api import read_json
from gateway.web.schemas import AttachIn

PAGE = 100


def event_json(event: InboundEvent) -> dict[str, Any]:
    text = None
    if event.normalized:
        msg = inbound_from_json(event.normalized)
        text = visible_text(msg)[:2000]
    return {
        "id": event.id, "channel": event.channel, "outcome": event.outcome.value, "reason": event.reason,
        "sender": event.sender, "received_at": event.received_at.isoformat(),
        "conversation_id": event.conversation_id, "message_id": event.message_id, "text": text,
    }


async def list_inbound(request: web.Request) -> web.Response:
    """GET /api/v1/inbound?outcome=unmatched[&before=<id>]: newest first, 100 a page."""
    school = request[keys.SCHOOL]
    query = InboundEvent.filter(school=school).exclude(channel="sms_status")
    outcome = request.query.get("outcome")
    if outcome:
        try:
            query = query.filter(outcome=InboundOutcome(outcome))
        except ValueError:
            choices = ", ".join(o.value for o in InboundOutcome)
            raise InvalidInput(f"outcome: must be one of {choices}") from None
    before = request.query.get("before", "")
    if before:
        if not before.isdigit():
            raise InvalidInput("before: must be an inbound item id")
        query = query.filter(id__lt=int(before))
    events = await query.order_by("-id").limit(PAGE)
    page = [event_json(e) for e in events]
    return web.json_response({"items": page, "next_before": page[-1]["id"] if len(page) == PAGE else None})


async def attach_inbound(request: web.Request) -> web.Response:
    """POST /api/v1/inbound/{id}/attach {"conversation_id"}: put an unmatched item in a conversation."""
    school = request[keys.SCHOOL]
    raw = request.match_info["id"]
    event = await InboundEvent.get_or_none(id=int(raw), school=school) if raw.isdigit() and len(raw) < 12 else None
    if event is None or event.channel not in ("sms", "email"):
        raise NotFound(f"no inbound item {raw!r} in this school")
    body = await read_json(request, AttachIn)
    if event.outcome is not InboundOutcome.UNMATCHED:
        raise Conflict(f"inbound item {event.id} is {event.outcome.value}; only unmatched items can be attached")
    conversation = await Conversation.get_or_none(id=body.conversation_id, school=school)
    if conversation is None:
        raise NotFound(f"no conversation {body.conversation_id} in this school")
    message = await attach_to_conversation(event, conversation)
    dispatcher = request.config_dict.get(keys.DISPATCHER)
    if dispatcher is not None:
        dispatcher.wake()
    return web.json_response({"message_id": message.id, "conversation_id": conversation.id}, status=201)
