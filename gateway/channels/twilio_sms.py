"""SMS through Twilio's REST API, with the twilio library's async client.

Everything Twilio-shaped stops here: callers hand us an OutboundSms and get a SendResult, a
TransientSendError or a PermanentSendError; status callbacks come back as StatusUpdate.

Why there is a small HTTP client subclass (verified against twilio 9.13.0 / aiohttp 3.14):
* The stock AsyncTwilioHttpClient accepts `timeout=` but never uses it: every request passes
  `timeout=None` to aiohttp, which means *no timeout at all* (a hung Twilio froze a send for as
  long as the server kept the socket open). We pass a real ClientTimeout.
* It builds its aiohttp session with the default connector; we need our own connection limit.
* It authenticates with aiohttp.BasicAuth, deprecated in aiohttp 3.14; we send the header.
* A TwilioRestException does not carry the response headers, so Retry-After would be lost; the
  client records them for the send in progress (see _ResponseProbe).
"""
from __future__ import annotations

import email.utils
import json
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from multidict import MultiDictProxy
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from gateway.channels.base import (
    ChannelKind,
    ContactProblem,
    DeliveryStatus,
    InboundMessage,
    OutboundItem,
    OutboundSms,
    PermanentSendError,
    SendError,
    SendResult,
    StatusUpdate,
    TransientSendError,
)
from gateway.channels.sms_segments import count_segments

log = logging.getLogger(__name__)

# --- Twilio error codes we act on (https://www.twilio.com/docs/api/errors/<code>) ------------------

# 21610 "Attempt to send to unsubscribed recipient": the recipient texted STOP to this sender.
# Twilio will refuse every message until they text START; that is an opt-out, not a bad number.
TWILIO_OPTED_OUT = "21610"

# Codes that say the *recipient's number* cannot receive SMS, so the contact point is unusable and
# the threads layer should fall back to another channel:
#   21211 Invalid 'To' phone number (not a number Twilio can parse / does not exist).
#   21614 'To' number is not a valid mobile number (landline or invalid number).
#   21635 'To' number cannot be a landline (countries where Twilio does not even try landlines).
#   21612 The 'To' phone number is not currently reachable via SMS / no route for this To+From
#         combination. Twilio's causes are a To that cannot take SMS (landline, unsupported line
#         type or carrier) or a sender type that cannot reach it (e.g. a short code abroad). Our
#         senders are the school's own long codes, the same type for every recipient, so in
#         practice this is about the recipient: mark it UNREACHABLE so that guardian gets e-mail
#         instead of every future SMS failing the same way.
TWILIO_UNREACHABLE_AT_SEND = frozenset({"21211", "21614", "21635", "21612"})

# 21408 "Permission to send an SMS has not been enabled for the region indicated by the 'To'
# number": a Messaging Geo Permissions setting of OUR account. The number is fine (it would be
# reached once an operator enables the country), so it is a permanent failure of this delivery
# with no ContactProblem: marking the guardian unreachable would hide an account problem.
TWILIO_REGION_DISABLED = "21408"

# Codes that are worth retrying even though they arrive as 4xx:
#   20003 Authenticate (HTTP 401): wrong SID / token. An operator fixes the config; the messages
#         must wait for that, not be dropped.
#   20429 Too Many Requests (HTTP 429): API concurrency / rate limit.
#   21611 "This 'From' number has exceeded the maximum number of queued messages" (HTTP 400):
#         Twilio's per-sender queue is full; it drains at the sender's rate, so later works.
TWILIO_AUTH_FAILED = "20003"
TWILIO_TRANSIENT_CODES = frozenset({TWILIO_AUTH_FAILED, "20429", "21611"})

# Delivery error codes reported in status callbacks (ErrorCode), and the ones that truly mean the
# address is unusable. Deliberately NOT mapped, because they say nothing final about the number:
#   30003 Unreachable destination handset: phone off, no signal, roaming; Twilio itself suggests
#         retrying. A guardian whose phone was off for a day must not lose SMS for good.
#   30004 Message blocked: the recipient may have blocked the sender, or the carrier did; it is
#         about this sender/content, and the number still works for others.
#   30007 / 30008 / 30034 ...: carrier filtering, unknown error, unregistered A2P sender: about
#         our content or our registration, not about the recipient.
_CALLBACK_PROBLEMS: dict[str, ContactProblem] = {
    "21610": ContactProblem.OPTED_OUT,     # unsubscribed recipient (reported async via services)
    "30005": ContactProblem.UNREACHABLE,   # Unknown destination handset: the number does not exist
    "30006": ContactProblem.UNREACHABLE,   # Landline or unreachable carrier: cannot receive SMS
    "21211": ContactProblem.UNREACHABLE,   # the send-time codes can arrive asynchronously too when
    "21614": ContactProblem.UNREACHABLE,   # a Messaging Service queued the message first
    "21612": ContactProblem.UNREACHABLE,
    "21635": ContactProblem.UNREACHABLE,
}

# Twilio MessageStatus → ours. Twilio's outbound lifecycle is accepted/scheduled (Messaging
# Service) → queued → sending → sent → delivered | undelivered, or failed / canceled before it
# left. "read" exists for channels with read receipts (WhatsApp, RCS): it implies delivered.
_STATUS_MAP: dict[str, DeliveryStatus] = {
    "accepted": DeliveryStatus.SENT,
    "scheduled": DeliveryStatus.SENT,
    "queued": DeliveryStatus.SENT,
    "sending": DeliveryStatus.SENT,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.DELIVERED,
    # Part of the message reached the handset; the ErrorCode, if any, is kept in the update.
    "partially_delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}


# --- HTTP client --------------------------------------------------------------------------------


@dataclass(slots=True)
class _ResponseProbe:
    """Where the HTTP client leaves the raw answer of the request made for one send()."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


# Set by send() for the duration of one create_async call. The twilio call chain is plain awaits
# inside the caller's task, so the HTTP client sees the probe of *its* send even when many sends
# run concurrently; a shared "last response" attribute would mix them up.
_PROBE: ContextVar[_ResponseProbe | None] = ContextVar("twilio_response_probe", default=None)


class _GatewayHttpClient(AsyncTwilioHttpClient):
    """AsyncTwilioHttpClient with a working timeout, a connection limit and header capture."""

    def __init__(self, *, timeout: float, max_connections: int) -> None:
        # pool_connections=False: the base class would create a session with the default
        # connector; we create ours below (in the running loop, like the base class).
        super().__init__(pool_connections=False, timeout=timeout)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        assert isinstance(self.session, aiohttp.ClientSession)
        send_headers = dict(headers or {})
        if auth is not None:
            send_headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        # The twilio client always passes timeout=None; fall back to ours instead of "none".
        total = timeout if timeout is not None else self.timeout
        async with self.session.request(
            method.upper(),
            url,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=send_headers,
            timeout=aiohttp.ClientTimeout(total=total),
            allow_redirects=allow_redirects,
        ) as resp:
            text = await resp.text()
        probe = _PROBE.get()
        if probe is not None:
            probe.status = resp.status
            probe.headers = resp.headers
        return Response(resp.status, text, resp.headers)


# --- the channel --------------------------------------------------------------------------------


class TwilioSmsChannel:
    """The Channel for ChannelKind.SMS, backed by Twilio's Messages API."""

    kind: ChannelKind = ChannelKind.SMS

    def __init__(self, client: Client, http: _GatewayHttpClient) -> None:
        # Use open(): the aiohttp session must be created inside the running loop.
        self._client = client
        self._http = http

    @classmethod
    async def open(
        cls,
        account_sid: str,
        auth_token: str,
        *,
        api_base_url: str | None = None,
        timeout: float = 15.0,
        max_connections: int = 20,
    ) -> TwilioSmsChannel:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        http = _GatewayHttpClient(timeout=timeout, max_connections=max_connections)
        try:
            # environment={}: ignore TWILIO_REGION / TWILIO_EDGE from os.environ, which rewrite
            # the host (STACK.md: a region turned 127.0.0.1 into 127.ie1.0.1).
            client = Client(account_sid, auth_token, http_client=http, environment={})
            if api_base_url:
                client.api.base_url = api_base_url.rstrip("/")
        except BaseException:
            await http.close()      # do not leak the aiohttp session ("Unclosed client session")
            raise
        return cls(client, http)

    async def send(self, item: OutboundItem) -> SendResult:
        # Typed OutboundItem to satisfy the Channel protocol (parameters are contravariant).
        if not isinstance(item, OutboundSms):
            raise TypeError(f"TwilioSmsChannel sends OutboundSms, not {type(item).__name__}")
        kwargs: dict[str, Any] = {"to": item.to, "body": item.body}
        if item.from_.startswith("MG"):
            # A Messaging Service SID: Twilio picks the sender from the service's pool.
            kwargs["messaging_service_sid"] = item.from_
        else:
            kwargs["from_"] = item.from_
        if item.status_callback:
            kwargs["status_callback"] = item.status_callback
        segments = count_segments(item.body).segments

        probe = _ResponseProbe()
        token = _PROBE.set(probe)
        try:
            message = await self._client.messages.create_async(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _error_from_twilio(exc, probe) from exc
        except TimeoutError as exc:
            # aiohttp's ServerTimeoutError / ConnectionTimeoutError are TimeoutError subclasses.
            # Twilio may have accepted the message before the answer was lost; retrying can send
            # it twice, but losing it silently is worse for a school (and the Messages API has no
            # idempotency key to do better).
            raise TransientSendError("timeout", f"no answer from Twilio: {exc!r}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Connection refused / reset, DNS failure, server disconnected mid-answer.
            raise TransientSendError("connection", f"cannot reach Twilio: {exc!r}") from exc
        except json.JSONDecodeError as exc:
            # A 2xx that is not JSON: a proxy or captive portal answered, not Twilio.
            raise TransientSendError("bad-response", f"unreadable answer: {exc}") from exc
        finally:
            _PROBE.reset(token)
        log.debug("twilio accepted %s as %s (%d segments)", item.reference, message.sid, segments)
        return SendResult(provider_id=str(message.sid), segments=segments)

    async def close(self) -> None:
        await self._http.close()


def _error_from_twilio(
    exc: TwilioRestException | TwilioServiceException, probe: _ResponseProbe
) -> SendError:
    status = int(exc.status)
    code = str(exc.code) if exc.code is not None and exc.code != status else None
    if isinstance(exc, TwilioRestException):
        reason = exc.msg
    else:
        reason = exc.detail or exc.title
    label = code or f"http-{status}"

    if status == 401 or code in TWILIO_TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientSendError(label, reason, retry_after=_retry_after(probe.headers))
    if code == TWILIO_OPTED_OUT:
        return PermanentSendError(label, reason, problem=ContactProblem.OPTED_OUT)
    if code in TWILIO_UNREACHABLE_AT_SEND:
        return PermanentSendError(label, reason, problem=ContactProblem.UNREACHABLE)
    if 400 <= status < 500:
        # Includes 21408 (region disabled, see above), 21602 (empty body), 21606/21212 (bad From):
        # resending the same request cannot succeed, and none of them is about the recipient.
        return PermanentSendError(label, reason)
    # 3xx and other oddities: the base URL points at something that is not Twilio's API.
    # A configuration problem, so keep the message.
    return TransientSendError(label, reason, retry_after=_retry_after(probe.headers))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), if any."""
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- webhooks -----------------------------------------------------------------------------------


def is_valid_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | MultiDictProxy[Any],
    signature: str,
) -> bool:
    """Check X-Twilio-Signature over the public URL Twilio called and the POSTed form.

    `url` must be the URL as Twilio saw it (scheme, host, path and query); behind a proxy rebuild
    it from GATEWAY_PUBLIC_URL. Twilio's validator tries it with and without the port and compares
    in constant time.
    """
    if not auth_token or not signature:
        # An empty token would make the HMAC key public: anyone could forge the signature.
        return False
    try:
        return bool(RequestValidator(auth_token).validate(url, params, signature))
    except TypeError:
        # A non-text value (a multipart file part) cannot be in a form Twilio signed.
        return False


def parse_status_callback(form: Mapping[str, str]) -> StatusUpdate:
    """Turn Twilio's status callback form into our StatusUpdate.

    Raises ValueError when the form is not an outbound-message status callback.
    """
    sid = (form.get("MessageSid") or "").strip()
    if not sid:
        raise ValueError("Twilio status callback without MessageSid")
    raw_status = (form.get("MessageStatus") or "").strip()
    if not raw_status:
        raise ValueError(f"Twilio status callback for {sid} without MessageStatus")
    status = _STATUS_MAP.get(raw_status.lower())
    if status is None:
        # receiving / received belong to inbound messages; anything else is new to us.
        raise ValueError(f"unknown Twilio MessageStatus {raw_status!r} for {sid}")
    error_code = (form.get("ErrorCode") or "").strip() or None
    error_reason = (form.get("ErrorMessage") or "").strip() or None
    problem = _CALLBACK_PROBLEMS.get(error_code) if error_code else None
    if status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED):
        # A code on a success status is informational; the address demonstrably works.
        problem = None
    return StatusUpdate(
        provider_id=sid,
        status=status,
        error_code=error_code,
        error_reason=error_reason,
        problem=problem,
        raw_status=raw_status,
    )


def parse_inbound_sms(form: Mapping[str, str]) -> InboundMessage:
    """Turn Twilio's incoming-message webhook form into our InboundMessage.

    Twilio posts MessageSid, From, To, Body (and MessagingServiceSid when the number belongs to a
    Messaging Service; To is then still the number the guardian texted). Raises ValueError when a
    field we need is missing.
    """
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    sender = (form.get("From") or "").strip()
    to = (form.get("To") or "").strip()
    missing = [name for name, value in (("MessageSid", sid), ("From", sender), ("To", to)) if not value]
    if missing:
        raise ValueError(f"Twilio message webhook without {', '.join(missing)}")
    if "Body" not in form:
        raise ValueError("Twilio message webhook without Body")
    problems: list[str] = []
    media = (form.get("NumMedia") or "0").strip()
    if media.isdigit() and int(media) > 0:
        # MMS attachments are not shown in threads yet; the URLs stay in the stored payload.
        problems.append(f"{media} media attachment(s) not shown")
    return InboundMessage(
        channel=ChannelKind.SMS,
        provider_id=sid,
        sender=sender,
        recipients=(to,),
        text=form.get("Body") or "",
        problems=tuple(problems),
        raw=urlencode(sorted(form.items())),
        received_via="webhook",
    )


__all__ = [
    "TwilioSmsChannel",
    "is_valid_signature",
    "parse_inbound_sms",
    "parse_status_callback",
]
