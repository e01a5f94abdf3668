"""Provider webhooks. Each request is verified, stored as an InboundEvent with its outcome, and
answered at once; routing happens afterwards from the stored row. Nothing that arrives is dropped
without a row saying why, and nothing a sender controls can cause a 500."""
from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import MultiDict
from tortoise.exceptions import IntegrityError
from twilio.twiml.messaging_response import MessagingResponse

from gateway.channels.twilio_sms import (
    is_valid_signature,
    parse_inbound_sms,
    parse_status_callback,
)
from gateway.intake import take_email
from gateway.threads.inbound import record_inbound
from gateway.threads.keywords import (
    Keyword,
    apply_keyword,
    keyword_for,
    school_for_number,
)
from gateway.threads.models import InboundEvent, InboundOutcome
from gateway.threads.status import apply_status_update
from gateway.web import keys
from gateway.web.errors_json import error_response

log = logging.getLogger(__name__)
KEYWORD_OUTCOMES = {Keyword.OPT_OUT: InboundOutcome.OPT_OUT, Keyword.OPT_IN: InboundOutcome.OPT_IN,
                    Keyword.HELP: InboundOutcome.HELP}
REJECTED_PAYLOAD_LIMIT = 64 * 1024  # what we keep of a request that failed its checks


def public_url(request: web.Request) -> str:
    """The URL Twilio signed: GATEWAY_PUBLIC_URL + path and query as received.

    Behind a TLS-terminating proxy `request.url` is the internal http://127.0.0.1:PORT/... and a
    signature check against it fails (STACK.md), so we rebuild the public one.
    """
    return request.config_dict[keys.SETTINGS].public_url + str(request.rel_url)


EMPTY_TWIML = str(MessagingResponse())  # the common answer: built once


def twiml(*replies: str) -> web.Response:
    if not replies:
        return web.Response(text=EMPTY_TWIML, content_type="application/xml")
    response = MessagingResponse()
    for reply in replies:
        response.message(reply)
    return web.Response(text=str(response), content_type="application/xml")


async def _twilio_form(request: web.Request, channel: str) -> MultiDict[str] | web.Response:
    """The verified form of a Twilio webhook, or the error response (the attempt stored)."""
    settings = request.config_dict[keys.SETTINGS]
    raw = await request.read()
    try:
        form = MultiDict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        # Twilio always sends UTF-8; anything else is not Twilio (and could not be signed by it).
        await store_rejected(channel, raw.decode("utf-8", errors="replace"), "the form is not UTF-8")
        return error_response(400, "invalid", "the form is not UTF-8")
    if settings.twilio is None:
        await store_rejected(channel, urlencode(list(form.items())), "twilio is not configured")
        return error_response(403, "forbidden", "twilio is not configured")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not is_valid_signature(settings.twilio.auth_token, public_url(request), form, signature):
        await store_rejected(channel, urlencode(list(form.items())), "bad or missing X-Twilio-Signature")
        return error_response(403, "bad_signature", "the X-Twilio-Signature does not match this request")
    return form


async def twilio_sms(request: web.Request) -> web.Response:
    """POST /webhooks/twilio/sms: a text from a guardian (or anyone) to one of our numbers."""
    form = await _twilio_form(request, "sms")
    if isinstance(form, web.Response):
        return form
    try:
        msg = parse_inbound_sms(form)
    except ValueError as exc:
        await store_rejected("sms", urlencode(list(form.items())), str(exc))
        return error_response(400, "invalid", str(exc))
    school = await school_for_number(msg.recipients[0])
    event, new = await record_inbound(msg, school_id=school.id if school else None)
    if not new:
        return twiml()  # Twilio retried a message we already have: answer nothing twice
    keyword = await keyword_for(msg.text, msg.sender, school)
    if keyword is not None:
        # Keywords are answered in the TwiML itself, in the sender's language, and never reach a
        # conversation. Twilio's own opt-out reply should be turned off on the number (README).
        reply, affected = await apply_keyword(keyword, msg.sender, school)
        await InboundEvent.filter(id=event.id).update(
            outcome=KEYWORD_OUTCOMES[keyword], reason=f"{affected} contact point(s)", processed_at=datetime.now(timezone.utc))
        return twiml(reply)
    request.config_dict[keys.INBOUND].schedule(event.id)
    return twiml()


async def twilio_status(request: web.Request) -> web.Response:
    """POST /webhooks/twilio/status?delivery=<id>: Twilio's message status callback."""
    form = await _twilio_form(request, "sms_status")
    if isinstance(form, web.Response):
        return form
    payload = urlencode(list(form.items()))
    try:
        update = parse_status_callback({k: str(v) for k, v in form.items()})
    except ValueError as exc:
        await store_rejected("sms_status", payload, str(exc))
        return error_response(400, "invalid", str(exc))
    raw_delivery = request.query.get("delivery", "")
    delivery_id = int(raw_delivery) if raw_delivery.isdigit() and len(raw_delivery) < 12 else None
    event_key = f"status:{update.provider_id}:{update.raw_status or update.status.value}"
    try:
        event = await InboundEvent.create(channel="sms_status", provider_id=event_key[:255], payload=payload)
    except IntegrityError:
        return web.Response(status=204)  # Twilio retried a callback we already have
    delivery = await apply_status_update(update, delivery_id=delivery_id)
    event.outcome = InboundOutcome.APPLIED if delivery is not None else InboundOutcome.IGNORED
    event.reason = None if delivery is not None else "no delivery with that id and SID"
    event.processed_at = datetime.now(timezone.utc)
    await event.save(update_fields=["outcome", "reason", "processed_at"])
    return web.Response(status=204)


async def inbound_email(request: web.Request) -> web.Response:
    """POST /webhooks/email: one raw RFC 5322 message, for MTAs that pipe mail to HTTP."""
    settings = request.config_dict[keys.SETTINGS]
    limit = settings.max_email_bytes
    raw, oversized = await _read_limited(request, limit)
    secret = settings.inbound_email_secret
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        reason = "the inbound e-mail webhook is not configured" if not secret else "bad or missing bearer secret"
        await store_rejected("email", raw[:REJECTED_PAYLOAD_LIMIT].decode("utf-8", errors="replace"), reason)
        return error_response(401, "unauthorized", reason)
    event, new = await take_email(raw, request.config_dict[keys.INBOUND], max_bytes=limit, received_via="webhook",
                                  cut_at=limit if oversized else None)
    if oversized:
        # What we read (headers, the start of the body) is stored, rejected with a clear reason by
        # the processor, and the MTA gets a permanent error to bounce to the sender.
        return error_response(413, "too_large", f"the message is larger than {limit} bytes")
    return web.json_response({"id": event.id, "duplicate": not new}, status=202)


async def _read_limited(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """Read the body up to `limit` bytes (the app's client_max_size is for JSON, not for mail)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        take = chunk[: max(0, limit - size)]
        chunks.append(take)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), True
    return b"".join(chunks), False


async def store_rejected(channel: str, payload: str, reason: str) -> None:
    key = f"rejected:{hashlib.sha256(payload.encode()).hexdigest()[:16]}:{uuid.uuid4().hex}"
    await InboundEvent.create(channel=channel, provider_id=key, payload=payload[:REJECTED_PAYLOAD_LIMIT],
                              outcome=InboundOutcome.REJECTED, reason=reason[:500],
                              processed_at=datetime.now(timezone.utc))
    log.warning("rejected a %s webhook: %s", channel, reason)
