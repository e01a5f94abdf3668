"""TwilioSmsChannel against the recording fake Twilio, and the webhook helpers."""
from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from gateway.channels.base import (
    ChannelKind,
    ContactProblem,
    DeliveryStatus,
    OutboundEmail,
    OutboundSms,
    PermanentSendError,
    StatusUpdate,
    TransientSendError,
)
from gateway.channels.twilio_sms import (
    TwilioSmsChannel,
    is_valid_signature,
    parse_status_callback,
)
from tests.fakes.twilio import (
    FakeTwilio,
    sign_twilio_request,
)

SCHOOL_NUMBER = "+15005550006"
GUARDIAN = "+14155552671"
SERVICE_SID = "MG" + "0123456789abcdef" * 2
CALLBACK = "https://gw.example.org/webhooks/twilio/status"

Server = Callable[..., Awaitable[Any]]


def sms(body: str = "Hola, la reunión es el jueves.", **kw: Any) -> OutboundSms:
    fields: dict[str, Any] = {"to": GUARDIAN, "from_": SCHOOL_NUMBER, "body": body}
    fields.update(kw)
    return OutboundSms(**fields)


@pytest.fixture
async def channel(fake_twilio: FakeTwilio) -> AsyncIterator[TwilioSmsChannel]:
    ch = await TwilioSmsChannel.open(
        fake_twilio.account_sid, fake_twilio.auth_token, api_base_url=fake_twilio.url, timeout=2.0
    )
    yield ch
    await ch.close()


# --- sending ------------------------------------------------------------------------------------


async def test_a_send_reaches_twilio_with_to_from_body_and_callback(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    result = await channel.send(sms(status_callback=CALLBACK, reference="d-1"))

    assert channel.kind is ChannelKind.SMS
    [recorded] = fake_twilio.sent
    assert recorded.form == {
        "To": GUARDIAN,
        "From": SCHOOL_NUMBER,
        "Body": "Hola, la reunión es el jueves.",
        "StatusCallback": CALLBACK,
    }
    assert recorded.auth_user == fake_twilio.account_sid   # Basic auth SID:token was accepted
    assert result.provider_id == recorded.sid
    assert result.status == "sent"
    assert result.segments == 1


async def test_without_a_callback_none_is_sent(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    await channel.send(sms())
    assert "StatusCallback" not in fake_twilio.sent[0].form


async def test_segments_come_from_our_own_count(channel: TwilioSmsChannel) -> None:
    # One emoji makes it UCS-2: 71 units → 2 segments. (Twilio's own num_segments is 0 for
    # Messaging Service sends, so we do not rely on its answer.)
    result = await channel.send(sms("a" * 69 + "\U0001F600"))
    assert result.segments == 2


async def test_a_messaging_service_sid_is_sent_as_messaging_service_not_from(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    await channel.send(sms(from_=SERVICE_SID))
    form = fake_twilio.sent[0].form
    assert form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in form


async def test_the_channel_refuses_an_email(channel: TwilioSmsChannel) -> None:
    email = OutboundEmail(to="a@b.test", from_="s@school.test", subject="s", text="t", html=None,
                          message_id="<1@school.test>")
    with pytest.raises(TypeError):
        await channel.send(email)


# --- what Twilio's errors become ----------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(429, "20429"), (500, "20500"), (503, "20503")])
async def test_rate_limits_and_server_errors_are_transient(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel, status: int, code: str
) -> None:
    fake_twilio.fail_next(status)
    with pytest.raises(TransientSendError) as err:
        await channel.send(sms())
    assert err.value.code == code
    assert fake_twilio.sent == []
    # The fault was one answer, not the channel: the next send goes through.
    await channel.send(sms())
    assert len(fake_twilio.sent) == 1


async def test_retry_after_is_passed_on(fake_twilio: FakeTwilio, channel: TwilioSmsChannel) -> None:
    fake_twilio.fail_next(429, retry_after=30)
    with pytest.raises(TransientSendError) as err:
        await channel.send(sms())
    assert err.value.retry_after == 30.0


async def test_retry_after_as_an_http_date_becomes_seconds(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    fake_twilio.fail_next(503, retry_after=when)
    with pytest.raises(TransientSendError) as err:
        await channel.send(sms())
    assert err.value.retry_after is not None and 50 <= err.value.retry_after <= 60


async def test_an_error_without_a_twilio_code_is_labelled_by_http_status(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    fake_twilio.fail_next(502, code=None)
    with pytest.raises(TransientSendError) as err:
        await channel.send(sms())
    assert err.value.code == "http-502"
    assert err.value.retry_after is None


async def test_an_unsubscribed_recipient_is_opted_out(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    fake_twilio.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    with pytest.raises(PermanentSendError) as err:
        await channel.send(sms())
    assert (err.value.code, err.value.problem) == ("21610", ContactProblem.OPTED_OUT)
    assert "unsubscribed" in err.value.reason


async def test_an_invalid_number_is_unreachable(channel: TwilioSmsChannel) -> None:
    # The fake validates To like Twilio: "12345" is not a number Twilio can route → 21211.
    with pytest.raises(PermanentSendError) as err:
        await channel.send(sms(to="12345"))
    assert (err.value.code, err.value.problem) == ("21211", ContactProblem.UNREACHABLE)


@pytest.mark.parametrize("code", [21614, 21612, 21635])
async def test_numbers_that_cannot_take_sms_are_unreachable(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel, code: int
) -> None:
    fake_twilio.fail_next(400, code)
    with pytest.raises(PermanentSendError) as err:
        await channel.send(sms())
    assert (err.value.code, err.value.problem) == (str(code), ContactProblem.UNREACHABLE)


async def test_a_disabled_region_fails_the_delivery_but_not_the_contact(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    fake_twilio.fail_next(400, 21408, "Permission to send an SMS has not been enabled")
    with pytest.raises(PermanentSendError) as err:
        await channel.send(sms())
    assert (err.value.code, err.value.problem) == ("21408", None)


async def test_other_client_errors_are_permanent_with_the_twilio_code(
    channel: TwilioSmsChannel,
) -> None:
    with pytest.raises(PermanentSendError) as err:
        await channel.send(sms(body="   "))
    assert (err.value.code, err.value.problem) == ("21602", None)


async def test_a_full_sender_queue_is_transient(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel
) -> None:
    fake_twilio.fail_next(400, 21611, "This 'From' number has exceeded the maximum queued")
    with pytest.raises(TransientSendError) as err:
        await channel.send(sms())
    assert err.value.code == "21611"


async def test_bad_credentials_are_transient_so_nothing_is_lost(fake_twilio: FakeTwilio) -> None:
    ch = await TwilioSmsChannel.open(fake_twilio.account_sid, "wrong-token", api_base_url=fake_twilio.url)
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(sms())
    finally:
        await ch.close()
    assert err.value.code == "20003"
    assert fake_twilio.attempts == 1 and fake_twilio.sent == []


# --- network failures ---------------------------------------------------------------------------


async def test_a_hung_twilio_is_a_transient_timeout(fake_twilio: FakeTwilio) -> None:
    fake_twilio.hang()
    ch = await TwilioSmsChannel.open(
        fake_twilio.account_sid, fake_twilio.auth_token, api_base_url=fake_twilio.url, timeout=0.3
    )
    started = time.monotonic()
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(sms())
    finally:
        await ch.close()
    assert err.value.code == "timeout"
    assert time.monotonic() - started < 2.0
    assert fake_twilio.attempts == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_transient() -> None:
    ch = await TwilioSmsChannel.open(
        "AC" + "0" * 32, "token", api_base_url=f"http://127.0.0.1:{_closed_port()}", timeout=2.0
    )
    try:
        with pytest.raises(TransientSendError) as err:
            await ch.send(sms())
    finally:
        await ch.close()
    assert err.value.code == "connection"


# --- concurrency --------------------------------------------------------------------------------


async def test_concurrent_sends_overlap(fake_twilio: FakeTwilio, channel: TwilioSmsChannel) -> None:
    fake_twilio.delay(0.2)
    started = time.monotonic()
    results = await asyncio.gather(*(channel.send(sms(f"n{i}")) for i in range(10)))
    elapsed = time.monotonic() - started

    assert len({r.provider_id for r in results}) == 10
    assert fake_twilio.max_in_flight == 10
    assert elapsed < 1.0, f"10 sends at 0.2 s each took {elapsed:.2f} s: they ran one by one"


async def test_max_connections_caps_the_parallel_requests(fake_twilio: FakeTwilio) -> None:
    fake_twilio.delay(0.1)
    ch = await TwilioSmsChannel.open(
        fake_twilio.account_sid, fake_twilio.auth_token, api_base_url=fake_twilio.url,
        max_connections=2,
    )
    try:
        await asyncio.gather(*(ch.send(sms(f"n{i}")) for i in range(6)))
    finally:
        await ch.close()
    assert fake_twilio.max_in_flight == 2
    assert len(fake_twilio.sent) == 6


# --- signatures ---------------------------------------------------------------------------------

TOKEN = "12345678901234567890123456789012"
URL = "https://gw.example.org/webhooks/twilio/status"
FORM = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": GUARDIAN, "From": SCHOOL_NUMBER}


def test_a_correct_signature_is_valid() -> None:
    assert is_valid_signature(TOKEN, URL, FORM, sign_twilio_request(TOKEN, URL, FORM))


def test_the_port_does_not_matter_as_twilio_signs_either_way() -> None:
    signature = sign_twilio_request(TOKEN, URL, FORM)
    assert is_valid_signature(TOKEN, "https://gw.example.org:443/webhooks/twilio/status", FORM, signature)


@pytest.mark.parametrize(
    "url",
    [
        "http://gw.example.org/webhooks/twilio/status",       # scheme differs (TLS-terminating proxy)
        URL + "?x=1",                                          # query string differs
        URL + "/",                                             # trailing slash
        "https://other.example.org/webhooks/twilio/status",    # host differs
    ],
)
def test_a_signature_for_another_url_is_invalid(url: str) -> None:
    assert not is_valid_signature(TOKEN, url, FORM, sign_twilio_request(TOKEN, URL, FORM))


def test_a_signature_over_the_query_string_is_valid_with_it() -> None:
    url = URL + "?school=7"
    assert is_valid_signature(TOKEN, url, FORM, sign_twilio_request(TOKEN, url, FORM))


def test_tampered_params_wrong_token_and_empty_values_are_invalid() -> None:
    signature = sign_twilio_request(TOKEN, URL, FORM)
    assert not is_valid_signature(TOKEN, URL, {**FORM, "MessageStatus": "failed"}, signature)
    assert not is_valid_signature(TOKEN, URL, {**FORM, "Extra": "1"}, signature)
    assert not is_valid_signature("another-token", URL, FORM, signature)
    assert not is_valid_signature(TOKEN, URL, FORM, "")
    assert not is_valid_signature(TOKEN, URL, FORM, "not-base64!")
    # An empty auth token would let anyone sign: refuse even a "correct" signature.
    assert not is_valid_signature("", URL, FORM, sign_twilio_request("", URL, FORM))


async def test_status_callback_round_trip_through_a_real_webhook(
    fake_twilio: FakeTwilio, channel: TwilioSmsChannel, aiohttp_server: Server
) -> None:
    """The fake signs like Twilio; an aiohttp handler validates the raw MultiDictProxy form."""
    received: list[StatusUpdate] = []

    async def webhook(request: web.Request) -> web.Response:
        form = await request.post()
        signature = request.headers.get("X-Twilio-Signature", "")
        if not is_valid_signature(fake_twilio.auth_token, str(request.url), form, signature):
            return web.Response(status=403)
        received.append(parse_status_callback({k: str(v) for k, v in form.items()}))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks/twilio/status", webhook)
    server = await aiohttp_server(app)
    callback_url = str(server.make_url("/webhooks/twilio/status"))

    result = await channel.send(sms(status_callback=callback_url))
    resp = await fake_twilio.send_status_callback(result.provider_id, "undelivered", 30006,
                                                  "Landline or unreachable carrier")

    assert resp.status == 204
    assert received == [
        StatusUpdate(
            provider_id=result.provider_id,
            status=DeliveryStatus.UNDELIVERED,
            error_code="30006",
            error_reason="Landline or unreachable carrier",
            problem=ContactProblem.UNREACHABLE,
            raw_status="undelivered",
        )
    ]


# --- status callbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("twilio_status", "ours"),
    [
        ("accepted", DeliveryStatus.SENT),
        ("scheduled", DeliveryStatus.SENT),
        ("queued", DeliveryStatus.SENT),
        ("sending", DeliveryStatus.SENT),
        ("sent", DeliveryStatus.SENT),
        ("delivered", DeliveryStatus.DELIVERED),
        ("read", DeliveryStatus.DELIVERED),
        ("undelivered", DeliveryStatus.UNDELIVERED),
        ("failed", DeliveryStatus.FAILED),
        ("canceled", DeliveryStatus.FAILED),
    ],
)
def test_twilio_statuses_map_to_ours(twilio_status: str, ours: DeliveryStatus) -> None:
    update = parse_status_callback({"MessageSid": "SM1", "MessageStatus": twilio_status})
    assert update == StatusUpdate(provider_id="SM1", status=ours, raw_status=twilio_status)


@pytest.mark.parametrize(
    ("status", "code", "problem"),
    [
        ("failed", "21610", ContactProblem.OPTED_OUT),       # unsubscribed recipient
        ("undelivered", "30005", ContactProblem.UNREACHABLE),  # unknown handset: no such number
        ("undelivered", "30006", ContactProblem.UNREACHABLE),  # landline / unreachable carrier
        ("failed", "21211", ContactProblem.UNREACHABLE),
        ("undelivered", "30003", None),   # handset off or out of coverage: try again another day
        ("undelivered", "30004", None),   # blocked: about this sender or content, not the number
        ("undelivered", "30007", None),   # carrier filtering: about our content
        ("undelivered", "30008", None),   # unknown error
    ],
)
def test_only_codes_that_condemn_the_number_set_a_problem(
    status: str, code: str, problem: ContactProblem | None
) -> None:
    update = parse_status_callback(
        {"MessageSid": "SM1", "MessageStatus": status, "ErrorCode": code, "ErrorMessage": "x"}
    )
    assert (update.error_code, update.error_reason, update.problem) == (code, "x", problem)


def test_an_empty_error_code_is_no_error() -> None:
    update = parse_status_callback({"MessageSid": "SM1", "MessageStatus": "sent", "ErrorCode": ""})
    assert (update.error_code, update.problem) == (None, None)


@pytest.mark.parametrize(
    ("form", "complaint"),
    [
        ({"MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "", "MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "SM1"}, "MessageStatus"),
        ({"MessageSid": "SM1", "MessageStatus": "received"}, "received"),
        ({"MessageSid": "SM1", "MessageStatus": "teleported"}, "teleported"),
    ],
)
def test_bad_callbacks_are_rejected_with_a_clear_message(form: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_status_callback(form)

