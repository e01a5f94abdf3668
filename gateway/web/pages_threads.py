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
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from tortoise.expressions import Q

from gateway.clock import utcnow
from gateway.directory.models import School
from gateway.errors import InvalidInput, NotFound
from gateway.i18n import _
from gateway.threads.access import ThreadAccess, open_thread
from gateway.threads.compose import post_staff_reply
from gateway.threads.models import (
    Conversation,
    ConversationState,
    Delivery,
    Message,
    Origin,
    Participant,
)
from gateway.threads.web_actions import post_family_reply, set_state
from gateway.web import keys, labels, throttle
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
from gateway.web.pages_auth import too_many
from gateway.web.sessions import Session, current_session
from gateway.web.thread_view import thread_items

log = logging.getLogger(__name__)

STATUS_EVERY = 3.0      # seconds between re-reads of delivery states while a staff page is open
HEARTBEAT_EVERY = 20.0  # an SSE comment keeps proxies from closing an idle stream
RECHECK_EVERY = 15.0    # seconds between checks that the viewer may still watch



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
    rendered_at = utcnow()
    items = await thread_items(access, viewer.lang, school.timezone)
    if items:
        await _mark_read(access, items[-1].created_at)
    conversation = access.conversation
    return render(request, "thread.html", {
        "conversation": conversation, "school": school, "items": items, "access": access,
        "last_id": items[-1].id if items else 0, "labels": labels, "error": error, "draft": draft,
        "can_reply": access.may_reply,
        "closed": conversation.state is ConversationState.CLOSED, "limit": body_limit(request),
        "notice": _("Your message was sent.") if request.query.get("sent") else None,
        "rendered_at": rendered_at.isoformat(), "families": await _families_reached(access),
    }, status=status)


async def _families_reached(access: ThreadAccess) -> int:
    """For staff: how many non-staff people a reply here goes to (a warning when it is more than one)."""
    if access.staff is None:
        return 0
    return await Participant.filter(conversation_id=access.conversation.id).exclude(role="staff").count()


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
        if not access.may_reply:
            raise Forbidden("this conversation does not take replies")
        wait = throttle.check(request, (throttle.limits(request).family_writes, f"user:{viewer.user.id}"))
        if wait:
            return too_many(request, wait, viewer.lang)

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
    status_since = _since(request.query.get("since"))
    env = aiohttp_jinja2.get_env(request.app)
    macros = env.get_template("_message.html").module
    session = current_session(request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    # New messages and state changes come by wake-up (gateway.threads.live); staff pages also re-read
    # delivery states on a timer, and a quiet stream gets a comment now and then for the proxies.
    timer = STATUS_EVERY if access.staff is not None else HEARTBEAT_EVERY
    quiet_for, checked_at = 0.0, time.monotonic()
    news = _News(last_id, access.conversation.state)
    woke = True  # the first pass catches up at once (a reconnecting browser sends Last-Event-ID)
    await response.write(b"retry: 2000\n\n")  # how soon the browser reconnects after a drop (ms)
    with hub.watch(access.conversation.id) as changed:
        while not hub.stopping:
            try:
                due = time.monotonic() - checked_at >= RECHECK_EVERY
                # Signed out or session ended (e.g. a student's login disabled): the stream ends, and
                # the browser's reconnect is refused. No longer in the conversation: likewise.
                if (woke or due) and (session is None or not await Session.exists(id=session.id,
                                                                                   expires_at__gt=utcnow())):
                    break
                if due:
                    access, checked_at = await open_thread(viewer.user.id, access.conversation.id), time.monotonic()
                if woke:
                    await news.push(response, access, viewer.lang, school.timezone, macros)
                if access.staff is not None:
                    status_since = await _send_states(response, access, viewer, school, macros, status_since)
                if quiet_for >= HEARTBEAT_EVERY:
                    await response.write(b": keep-alive\n\n")
                    quiet_for = 0.0
            except (ConnectionResetError, RuntimeError):  # the page was closed
                break
            except NotFound:  # no longer allowed to see it
                break
            except Exception:  # never answer an error on a started stream: log, end it, let it reconnect
                log.exception("live stream of conversation %s failed", access.conversation.id)
                break
            try:
                await asyncio.wait_for(changed.wait(), timeout=timer)
                woke, quiet_for = True, 0.0
            except asyncio.TimeoutError:
                woke, quiet_for = False, quiet_for + timer
            changed.clear()
    return response


class _News:
    """What a stream has shown so far, and pushing what is new since: messages, and open/closed."""

    def __init__(self, last_id: int, state: ConversationState) -> None:
        self.last_id = last_id
        self.state = state

    async def push(self, response: web.StreamResponse, access: ThreadAccess, lang: str, zone: str,
                   macros: Any) -> None:
        state = await Conversation.filter(id=access.conversation.id).values_list("state", flat=True)
        if state and state[0] != self.state:
            self.state = state[0]
            html = macros.state_tag(self.state is ConversationState.CLOSED)
            await _send(response, "state", {"state": self.state.value, "html": str(html)})
        for item in await thread_items(access, lang, zone, after_id=self.last_id):
            html = macros.message_item(item, access, labels)
            await _send(response, "message", {"id": item.id, "html": str(html)}, event_id=item.id)
            self.last_id = item.id
            await _mark_read(access, item.created_at)


def _since(raw: str | None) -> datetime:
    """Delivery states changed after this moment are sent: the page's render time, at most an hour back."""
    now = utcnow()
    try:
        moment = datetime.fromisoformat(raw or "")
    except ValueError:
        return now
    if moment.tzinfo is None:
        return now
    return min(now, max(moment, now - timedelta(hours=1)))


async def _mark_read(access: ThreadAccess, up_to: datetime) -> None:
    """Read up to the newest message shown (not "now": one committed meanwhile stays unread)."""
    if access.participant is not None:
        await Participant.filter(id=access.participant.id).filter(
            Q(last_read_at__isnull=True) | Q(last_read_at__lt=up_to)).update(last_read_at=up_to)


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
