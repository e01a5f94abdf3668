"""Public pages that need no sign-in: health, metrics, the dev mailbox, newsletter view, unsubscribe."""
from __future__ import annotations

from datetime import datetime, timezone

import aiohttp_jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tortoise import connections

from gateway.channels.base import DeliveryStatus
from gateway.channels.models import DevOutboxItem
from gateway.directory.models import School, User
from gateway.i18n import best_locale, current_translations, translations_for
from gateway.metrics import OUTBOX_DEPTH
from gateway.threads.addresses import TOKEN_RE, hash_token
from gateway.threads.models import Delivery, Message, ReplyToken
from gateway.web import keys


def use_language(request: web.Request, *preferred: str | None) -> str:
    """Pick the page language: the user's, else the browser's Accept-Language, else English."""
    accepted = [part.split(";")[0].strip() for part in request.headers.get("Accept-Language", "").split(",")]
    locale = best_locale(*preferred, *accepted)
    current_translations.set(translations_for(locale))
    return locale


async def healthz(request: web.Request) -> web.Response:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:  # report, don't raise: this is what the probe is for
        return web.json_response({"status": "error", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    OUTBOX_DEPTH.set(await Delivery.filter(status=DeliveryStatus.QUEUED).count())
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@aiohttp_jinja2.template("dev_mailbox.html")
async def dev_mailbox(request: web.Request) -> dict[str, object]:
    """Everything the dev transports "sent", newest first (only when a dev transport is in use)."""
    settings = request.config_dict[keys.SETTINGS]
    if not (settings.uses_dev_sms or settings.uses_dev_email) or settings.is_production:
        raise web.HTTPNotFound()
    use_language(request)
    kind = request.query.get("kind")
    query = DevOutboxItem.all().order_by("-id")
    if kind in ("sms", "email"):
        query = query.filter(kind=kind)
    items = await query.limit(200)
    return {"items": items, "kind": kind, "settings": settings}


async def _token_target(token: str) -> ReplyToken | None:
    if not TOKEN_RE.match(token):
        return None
    return await ReplyToken.get_or_none(token_hash=hash_token(token)).select_related("conversation", "user")


@aiohttp_jinja2.template("message_view.html")
async def message_view(request: web.Request) -> dict[str, object]:
    """/m/<token>: the newsletter or announcement an SMS linked to, readable without signing in."""
    target = await _token_target(request.match_info["token"])
    if target is None:
        raise web.HTTPNotFound()
    school = await School.get(id=target.conversation.school_id)
    use_language(request, target.user.locale, school.default_locale)
    messages = await Message.filter(conversation_id=target.conversation_id, direction="outbound").order_by("created_at")
    return {"conversation": target.conversation, "messages": messages, "school": school}


@aiohttp_jinja2.template("unsubscribe.html")
async def unsubscribe(request: web.Request) -> dict[str, object]:
    """/unsubscribe/<token>: GET asks (mail scanners open links), POST unsubscribes (RFC 8058 one-click)."""
    target = await _token_target(request.match_info["token"])
    if target is None:
        raise web.HTTPNotFound()
    school = await School.get(id=target.conversation.school_id)
    use_language(request, target.user.locale, school.default_locale)
    done = False
    if request.method == "POST":
        await User.filter(id=target.user_id, newsletters_unsubscribed_at=None).update(
            newsletters_unsubscribed_at=datetime.now(timezone.utc))
        done = True
    return {"done": done, "school": school}
