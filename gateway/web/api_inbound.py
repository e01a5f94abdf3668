"""Triage of inbound items (/api/v1/inbound): what could not be routed, and attaching it by hand."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.channels.base import inbound_from_json
from gateway.errors import InvalidInput
from gateway.threads.inbound import visible_text
from gateway.threads.models import InboundEvent, InboundOutcome
from gateway.threads.triage import attach_unmatched
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
    body = await read_json(request, AttachIn)
    message = await attach_unmatched(school.id, int(raw) if raw.isdigit() and len(raw) < 12 else None,
                                     body.conversation_id)
    dispatcher = request.config_dict.get(keys.DISPATCHER)
    if dispatcher is not None:
        dispatcher.wake()
    await request.config_dict[keys.LIVE].publish(message.conversation_id)
    return web.json_response({"message_id": message.id, "conversation_id": message.conversation_id}, status=201)
