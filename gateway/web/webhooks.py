"""Provider webhooks. Each request is verified, stored as an InboundEvent with its outcome, then
acted on; nothing that arrives is dropped without a row saying why."""
from __future__ import annotations

import hashlib
import logging
import uuid
from urllib.parse import urlencode

from aiohttp import web
from tortoise.exceptions import IntegrityError

from gateway.channels.twilio_sms import is_valid_signature, parse_status_callback
from gateway.threads.models import InboundEvent
from gateway.threads.status import apply_status_update
from gateway.web import keys
from gateway.web.errors_json import error_response

log = logging.getLogger(__name__)


def public_url(request: web.Request) -> str:
    """The URL Twilio signed: GATEWAY_PUBLIC_URL + path and query as received.

    Behind a TLS-terminating proxy `request.url` is the internal http://127.0.0.1:PORT/... and a
    signature check against it fails (STACK.md), so we rebuild the public one.
    """
    return request.config_dict[keys.SETTINGS].public_url + str(request.rel_url)


async def twilio_status(request: web.Request) -> web.Response:
    """POST /webhooks/twilio/status?delivery=<id>: Twilio's message status callback."""
    settings = request.config_dict[keys.SETTINGS]
    form = await request.post()
    payload = urlencode(list(form.items()))
    if settings.twilio is None:
        await _store_rejected("sms_status", payload, "twilio is not configured")
        return error_response(403, "forbidden", "twilio is not configured")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not is_valid_signature(settings.twilio.auth_token, public_url(request), form, signature):
        await _store_rejected("sms_status", payload, "bad or missing X-Twilio-Signature")
        return error_response(403, "bad_signature", "the X-Twilio-Signature does not match this request")
    try:
        update = parse_status_callback({k: str(v) for k, v in form.items()})
    except ValueError as exc:
        await _store_rejected("sms_status", payload, str(exc))
        return error_response(400, "invalid", str(exc))
    raw_delivery = request.query.get("delivery", "")
    delivery_id = int(raw_delivery) if raw_delivery.isdigit() else None
    event_key = f"status:{update.provider_id}:{update.raw_status or update.status.value}"
    try:
        event = await InboundEvent.create(channel="sms_status", provider_id=event_key, payload=payload,
                                          outcome="received")
    except IntegrityError:
        return web.Response(status=204)  # Twilio retried a callback we already have
    delivery = await apply_status_update(update, delivery_id=delivery_id)
    event.outcome = "applied" if delivery is not None else "unmatched"
    event.reason = None if delivery is not None else "no delivery with that id and SID"
    await event.save(update_fields=["outcome", "reason"])
    return web.Response(status=204)


async def _store_rejected(channel: str, payload: str, reason: str) -> None:
    key = f"rejected:{hashlib.sha256(payload.encode()).hexdigest()[:16]}:{uuid.uuid4().hex}"
    await InboundEvent.create(channel=channel, provider_id=key, payload=payload, outcome="rejected", reason=reason)
    log.warning("rejected a %s webhook: %s", channel, reason)
