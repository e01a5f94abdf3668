"""The thread page, its reply box, close/reopen, and its live stream (server-sent events).

- `GET /conversations/<id>`: the messages the viewer may see (gateway.threads.access), each with a
  channel mark, how a reply found its conversation (`routed_by`), "sender not verified" when the
  address it came from is not the participant's, and for staff the delivery state per recipient.
  Opening it marks the conversation read for the viewer.
- `POST /conversations/<id>/messages`: a reply (staff: to everyone by their channel; a family
  member: to the staff). Post/redirect/get, so it works without JavaScript.
- `POST /conversations/<id>/state`: staff close or reopen it.
- `GET /conversations/<id>/events`: server-sent events (WHATWG HTML, "Server-sent events"). The
  page's script opens it; each new message arrives as rendered HTML (escaped on the server like
  the page itself), delivery states as they change. The browser reconnects by itself and sends
  Last-Event-ID, so nothing is missed across a reconnect. Wake-ups come from gateway.threads.live
  (LISTEN/NOTIFY across processes on PostgreSQL); delivery states are re-read every few seconds.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import aiohttp_jinja2
from aiohttp import web

from gateway.directory.models import School
from gateway.errors import InvalidInput
from gateway.i18n import _
from gateway.threads.access import ThreadAccess, open_thread
from gateway.threads.compose import post_staff_reply
from gateway.threads.models import ConversationKind, ConversationState, Delivery, Message, Origin, Participant
from gateway.threads.web_actions import post_family_reply, set_state
from gateway.web import keys, labels
from gateway.web.page_kit import (
    Forbidden,
    SignedIn,
    after_commit,
    form_int,
    once,
    redirect,
    render,
    signed_in,
    submission_key,
)
from gateway.web.thread_view import thread_items

STATUS_EVERY = 3.0      # seconds between re-reads of delivery states while a page is open
HEARTBEAT_EVERY = 20.0  # an SSE comment keeps proxies from closing an idle stream


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def _open(request: web.Request) -> tuple[SignedIn, ThreadAccess, School]:
    viewer = await signed_in(request)
    access = await open_thread(viewer.user.id, form_int(request.match_info["id"]))
    school = await School.get(id=access.conversation.school_id)
    return viewer, access, school


def body_limit(request: web.Request) -> int:
    return request.config_dict[keys.SETTINGS].max_body_chars


async def thread(request: web.Request) -> web.Response:
    viewer, access, school = await _open(request)
    return await render_thread(request, viewer, access, school)


async def render_thread(request: web.Request, viewer: SignedIn, access: ThreadAccess, school: School, *,
                        error: str | None = None, draft: str = "", status: int = 200) -> web.Response:
    items = await thread_items(access, viewer.lang, school.timezone)
    if access.participant is not None:
        await Participant.filter(id=access.participant.id).update(last_read_at=utcnow())
    conversation = access.conversation
    return render(request, "thread.html", {
        "conversation": conversation, "school": school, "items": items, "access": access,
        "last_id": items[-1].id if items else 0, "labels": labels, "error": error, "draft": draft,
        "can_reply": access.staff is not None or conversation.kind is not ConversationKind.NEWSLETTER,
        "closed": conversation.state is ConversationState.CLOSED, "limit": body_limit(request),
        "notice": _("Your message was sent.") if request.query.get("sent") else None,
    }, status=status)


async def reply(request: web.Request) -> web.Response:
    viewer, access, school = await _open(request)
    form = await request.post()
    body = str(form.get("body", "")).strip()
    problem = None
    if not body:
        problem = _("Write a message first.")
    elif len(body) > body_limit(request):
        problem = _("Your message is too long.")
    if problem is not None:
        return await render_thread(request, viewer, access, school, error=problem, draft=body, status=422)
    key = submission_key(viewer.user.id, form)
    if access.staff is not None:
        staff = access.staff

        async def write() -> Message:
            message, _count = await post_staff_reply(school, access.conversation.id, sender_external_id=staff.external_id,
                                                     body=body, origin=Origin.WEB, submission_key=key,
                                                     secret_key=request.config_dict[keys.SETTINGS].secret_key)
            return message
    else:
        if access.participant is None or access.conversation.kind is ConversationKind.NEWSLETTER:
            raise Forbidden("this conversation does not take replies")

        async def write() -> Message:
            return await post_family_reply(access, body, submission_key=key)
    written, earlier = await once(key, write)
    if written is not None:
        await after_commit(request, access.conversation.id)
    message = written or earlier  # the same form posted twice makes one message
    assert message is not None
    return redirect(f"/conversations/{access.conversation.id}?sent=1#m{message.id}")


async def change_state(request: web.Request) -> web.Response:
    viewer, access, _school = await _open(request)
    if access.staff is None:
        raise Forbidden("only staff close or reopen conversations")
    form = await request.post()
    wanted = str(form.get("state", ""))
    if wanted not in (ConversationState.OPEN.value, ConversationState.CLOSED.value):
        raise InvalidInput("state: open or closed")
    await set_state(access, ConversationState(wanted), viewer.user.id)
    await request.config_dict[keys.LIVE].publish(access.conversation.id)
    return redirect(f"/conversations/{access.conversation.id}")


# -- live ------------------------------------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    viewer, access, school = await _open(request)
    hub = request.config_dict[keys.LIVE]
    last_seen = request.headers.get("Last-Event-ID") or request.query.get("after", "")
    last_id = int(last_seen) if last_seen.isdigit() and len(last_seen) < 12 else 0
    env = aiohttp_jinja2.get_env(request.app)
    macros = env.get_template("_message.html").module
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    status_since = utcnow()
    quiet_for = 0.0
    # "retry" tells the browser how soon to reconnect after a drop (milliseconds).
    await response.write(b"retry: 2000\n\n")
    with hub.watch(access.conversation.id) as changed:
        while not hub.stopping:
            try:
                await asyncio.wait_for(changed.wait(), timeout=STATUS_EVERY)
                quiet_for = 0.0
            except asyncio.TimeoutError:
                quiet_for += STATUS_EVERY
            changed.clear()
            if hub.stopping:
                break
            try:
                for item in await thread_items(access, viewer.lang, school.timezone, after_id=last_id):
                    html = macros.message_item(item, access, labels)
                    await _send(response, "message", {"id": item.id, "html": str(html)}, event_id=item.id)
                    last_id = item.id
                    if access.participant is not None:
                        await Participant.filter(id=access.participant.id).update(last_read_at=utcnow())
                if access.staff is not None:
                    status_since = await _send_states(response, access, viewer, school, macros, status_since)
                if quiet_for >= HEARTBEAT_EVERY:
                    await response.write(b": keep-alive\n\n")
                    quiet_for = 0.0
            except (ConnectionResetError, RuntimeError):  # the page was closed
                break
    return response


async def _send_states(response: web.StreamResponse, access: ThreadAccess, viewer: SignedIn, school: School,
                       macros: object, since: datetime) -> datetime:
    now = utcnow()
    changed = await Delivery.filter(message__conversation_id=access.conversation.id, updated_at__gt=since).values_list(
        "id", flat=True)
    if changed:
        parts = {}
        for item in await thread_items(access, viewer.lang, school.timezone, delivery_ids=list(changed)):
            parts[str(item.id)] = str(macros.delivery_block(item, labels))  # type: ignore[attr-defined]
        await _send(response, "deliveries", parts)
    return now


async def _send(response: web.StreamResponse, event: str, data: object, *, event_id: int | None = None) -> None:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, ensure_ascii=False))  # JSON: no raw newlines in the data line
    await response.write(("\n".join(lines) + "\n\n").encode())
