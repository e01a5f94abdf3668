"""A recording fake of Twilio's Messages REST API, served by aiohttp.

Small but faithful where our code depends on it: Basic auth (401 / 20003), Twilio's validation
codes for To / From / Body, the 201 JSON shape, the legacy error JSON shape
(`{"code", "message", "more_info", "status"}`), and status callbacks signed exactly as Twilio
signs them (X-Twilio-Signature = HMAC-SHA1 over the full URL plus the sorted form params).

    from tests.fakes.twilio import fake_twilio  # noqa: F401

    async def test_x(fake_twilio):
        channel = await TwilioSmsChannel.open(fake_twilio.account_sid, fake_twilio.auth_token,
                                              api_base_url=fake_twilio.url)
        fake_twilio.fail_next(429)
        fake_twilio.delay(0.2); fake_twilio.hang(); fake_twilio.release()
        fake_twilio.sent[0].form["Body"]
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from gateway.channels.sms_segments import count_segments

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
API_VERSION = "2010-04-01"

# Loose E.164: "+", a non-zero country digit, 7 to 15 digits in all. Twilio answers 21211 for a To
# it cannot parse as a number.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Alphanumeric sender IDs: up to 11 letters/digits/spaces with at least one letter.
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_MAX_BODY = 1600  # characters; Twilio rejects longer bodies with 21617

# Default Twilio codes for a status when fail_next() is not given one (what Twilio sends).
_DEFAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One Messages.json request the fake accepted."""

    sid: str
    form: dict[str, str]
    at: float                       # time.monotonic() when it was answered
    auth_user: str                  # the Basic auth username (the account SID)


@dataclass(slots=True)
class _Failure:
    status: int
    code: int | None
    message: str
    retry_after: str | None


@dataclass
class FakeTwilio:
    """Control and record of the fake. `url` is set once the server runs (see the fixture)."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    url: str = ""
    sent: list[RecordedMessage] = field(default_factory=list)
    attempts: int = 0               # every POST to Messages.json, accepted or not
    in_flight: int = 0
    max_in_flight: int = 0          # how many requests overlapped at most (concurrency check)
    _failures: deque[_Failure] = field(default_factory=deque)
    _delay: float = 0.0
    _hung: asyncio.Event | None = None      # set → hung requests may proceed
    _hang_after: int | None = None          # requests up to this attempt number are answered
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- control --------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        code: int | None = None,
        message: str = "Fake Twilio failure",
        times: int = 1,
        *,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the next `times` authenticated requests with this error instead of 201."""
        code = code if code is not None else _DEFAULT_CODES.get(status)
        ra = None if retry_after is None else str(retry_after)
        for _ in range(times):
            self._failures.append(_Failure(status, code, message, ra))

    def delay(self, seconds: float) -> None:
        """Answer every following request `seconds` late (0 to stop)."""
        self._delay = seconds

    def hang(self) -> None:
        """Never answer following requests, until release()."""
        if self._hung is None or self._hung.is_set():
            self._hung = asyncio.Event()

    def hang_after(self, answered: int) -> None:
        """Answer the next `answered` requests, then never answer until release() (a stalled provider)."""
        self._hang_after = self.attempts + answered
        self._hung = asyncio.Event()

    def release(self) -> None:
        """Let hung requests proceed (they are then answered normally, to a client long gone)."""
        if self._hung is not None:
            self._hung.set()

    def by_sid(self, sid: str) -> RecordedMessage:
        for message in self.sent:
            if message.sid == sid:
                return message
        raise KeyError(f"the fake never accepted a message {sid}")

    async def send_status_callback(
        self, sid: str, status: str, error_code: int | str | None = None,
        error_message: str | None = None,
    ) -> aiohttp.ClientResponse:
        """POST a signed status callback to the StatusCallback the message was created with.

        Returns the (released) response so tests can check what our webhook answered.
        """
        message = self.by_sid(sid)
        url = message.form.get("StatusCallback")
        if not url:
            raise ValueError(f"message {sid} was created without a StatusCallback")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.form.get("From", "+15005550006"),  # a service picks a pool number
            "To": message.form["To"],
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if "MessagingServiceSid" in message.form:
            params["MessagingServiceSid"] = message.form["MessagingServiceSid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if error_message is not None:
            params["ErrorMessage"] = error_message
        headers = {
            "X-Twilio-Signature": sign_twilio_request(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=params, headers=headers) as resp:
                await resp.read()
                return resp

    # --- the app --------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._create_message)
        return app

    async def _create_message(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, self.attempts)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, attempt: int) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        await self._wait_as_told(attempt)

        user = _basic_auth(request.headers.get("Authorization", ""))
        if user != (self.account_sid, self.auth_token):
            return _error(401, 20003, "Authenticate")
        path_sid = request.match_info["sid"]
        if path_sid != self.account_sid:
            return _error(404, 20404, f"The requested resource /{API_VERSION}/Accounts/"
                                      f"{path_sid}/Messages.json was not found")
        if self._failures:
            failure = self._failures.popleft()
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
            return _error(failure.status, failure.code, failure.message, headers=headers)

        problem = _validate(form)
        if problem is not None:
            return problem

        sid = f"SM{next(self._seq):032x}"
        self.sent.append(RecordedMessage(sid, form, time.monotonic(), user[0]))
        return web.json_response(self._message_json(sid, form), status=201)

    async def _wait_as_told(self, attempt: int) -> None:
        # Both waits end early when the fixture tears down, so no handler outlives the test.
        if self._delay > 0:
            await _wait_or(self._closing, self._delay)
        hung = self._hung
        if self._hang_after is not None and attempt <= self._hang_after:
            hung = None
        if hung is not None and not hung.is_set():
            closing = asyncio.ensure_future(self._closing.wait())
            released = asyncio.ensure_future(hung.wait())
            try:
                await asyncio.wait({closing, released}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                released.cancel()

    def _message_json(self, sid: str, form: Mapping[str, str]) -> dict[str, Any]:
        # RFC 2822 with "+0000", e.g. "Fri, 07 Mar 2025 15:05:00 +0000", as Twilio writes it.
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        service = form.get("MessagingServiceSid")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            # Twilio reports 0 until a Messaging Service has picked a sender.
            "num_segments": "0" if service and not form.get("From")
            else str(count_segments(form["Body"]).segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": form["To"],
            "uri": uri,
        }


def _validate(form: Mapping[str, str]) -> web.Response | None:
    """The checks Twilio makes on a create, with its codes (twilio.com/docs/api/errors/<code>)."""
    to = form.get("To", "")
    if not to:
        return _error(400, 21604, "A 'To' phone number is required.")
    if not _E164.match(to):
        return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    sender = form.get("From", "")
    service = form.get("MessagingServiceSid", "")
    if not sender and not service:
        return _error(400, 21603, "A 'From' phone number is required.")
    if sender and not (_E164.match(sender) or _ALPHA_SENDER.match(sender)):
        return _error(400, 21212, f"Invalid From Number (caller ID): {sender}")
    if service and not _SERVICE_SID.match(service):
        return _error(404, 20404, f"The requested resource Service {service} was not found")
    if sender and sender == to:
        return _error(400, 21266, "'To' and 'From' number cannot be the same")
    body = form.get("Body", "")
    if not body.strip() and not form.get("MediaUrl"):
        return _error(400, 21602, "Message body is required.")
    if len(body) > _MAX_BODY:
        return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    callback = form.get("StatusCallback")
    if callback is not None and not re.match(r"^https?://[^\s/_]+[^\s]*$", callback):
        return _error(400, 21609, f"Invalid StatusCallback url: {callback}")
    return None


def _error(
    status: int, code: int | None, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    # Twilio's legacy REST error shape, which twilio-python turns into TwilioRestException.
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
            "status": status,
        },
        status=status,
        headers=headers,
    )


def _basic_auth(header: str) -> tuple[str, str] | None:
    # Decoded by hand: aiohttp.BasicAuth.decode() warns (BasicAuth is deprecated in 3.14).
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def _wait_or(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


def sign_twilio_request(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a POST of `params` to `url` (the full URL, query string included)."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


@pytest.fixture
async def fake_twilio(aiohttp_server: Callable[..., Awaitable[Any]]) -> AsyncIterator[FakeTwilio]:
    """A running fake; `fake_twilio.url` is the base URL to give TwilioSmsChannel.open()."""
    fake = FakeTwilio()
    server = await aiohttp_server(fake.make_app())
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    # Wake hung or delayed handlers so the server can shut down without waiting for them.
    fake._closing.set()
    fake.release()
