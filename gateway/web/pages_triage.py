"""`/triage`: the replies no conversation could be told for, for staff admins to put in place.

Admins of a school see its unmatched items (SMS and e-mail), newest first, 50 a page, with the
visible text, where it came from and why it was not matched; each has a form to attach it to a
conversation of that school (suggested: the open conversations of people who use that address).
Only admins: the sender's address is shown here, and nowhere else in the pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from gateway.channels.base import inbound_from_json
from gateway.directory.models import ContactPoint
from gateway.errors import Conflict, NotFound
from gateway.i18n import _
from gateway.threads.inbound import visible_text
from gateway.threads.models import Conversation, InboundEvent, InboundOutcome, Participant
from gateway.threads.triage import TRIAGED_CHANNELS, attach_unmatched
from gateway.web import keys, labels
from gateway.web.page_kit import Forbidden, SignedIn, form_int, redirect, render, signed_in_staff
from gateway.web.thread_view import clock

PER_PAGE = 50


@dataclass
class TriageItem:
    id: int
    school_id: int
    channel: str
    sender: str
    received_at: datetime
    reason: str
    text: str
    suggestions: list[Conversation]


async def _admin(request: web.Request) -> SignedIn:
    viewer = await signed_in_staff(request)
    if not viewer.admin_of:
        raise Forbidden("only school administrators see unmatched replies")
    return viewer


async def triage(request: web.Request) -> web.Response:
    viewer = await _admin(request)
    return await _render(request, viewer)


async def _render(request: web.Request, viewer: SignedIn, *, error: str | None = None, status: int = 200) -> web.Response:
    before = form_int(request.query.get("before"))
    query = InboundEvent.filter(school_id__in=viewer.admin_of, outcome=InboundOutcome.UNMATCHED,
                                channel__in=TRIAGED_CHANNELS)
    if before:
        query = query.filter(id__lt=before)
    events = await query.order_by("-id").limit(PER_PAGE + 1)
    more = len(events) > PER_PAGE
    items = [await _item(e) for e in events[:PER_PAGE]]
    zone = next(m.school.timezone for m in viewer.staff if m.school_id in viewer.admin_of)
    return render(request, "triage.html", {
        "items": items, "fmt": clock(viewer.lang, zone), "labels": labels, "error": error,
        "next_link": f"/triage?before={items[-1].id}" if more and items else None,
    }, status=status)


async def _item(event: InboundEvent) -> TriageItem:
    text = ""
    if event.normalized:
        msg = inbound_from_json(event.normalized)
        text = visible_text(msg) or (msg.text or "").strip()
    holders = await ContactPoint.filter(address=event.sender or "").values_list("user_id", flat=True)
    suggestions: list[Conversation] = []
    if holders:
        ids = await Participant.filter(user_id__in=list(holders)).values_list("conversation_id", flat=True)
        suggestions = list(await Conversation.filter(id__in=list(set(ids)), school_id=event.school_id)
                           .order_by("-last_message_at").limit(10))
    return TriageItem(event.id, event.school_id or 0, event.channel, event.sender or "", event.received_at,
                      event.reason or "", text[:2000], suggestions)


async def attach(request: web.Request) -> web.Response:
    viewer = await _admin(request)
    form = await request.post()
    event_id = form_int(request.match_info["id"])
    event = await InboundEvent.get_or_none(id=event_id, school_id__in=viewer.admin_of) if event_id else None
    if event is None:
        raise NotFound("no such unmatched reply")
    conversation_id = form_int(form.get("conversation_id")) or form_int(form.get("conversation_number"))
    try:
        message = await attach_unmatched(event.school_id, event.id, conversation_id)  # type: ignore[arg-type]
    except NotFound:
        return await _render(request, viewer, error=_("There is no conversation with that number in this school."),
                             status=422)
    except Conflict:
        return await _render(request, viewer, error=_("That reply has already been dealt with."), status=409)
    dispatcher = request.config_dict.get(keys.DISPATCHER)
    if dispatcher is not None:
        dispatcher.wake()
    await request.config_dict[keys.LIVE].publish(message.conversation_id)
    return redirect(f"/conversations/{message.conversation_id}#m{message.id}")
