"""POST /webhooks/twilio/status: signed exactly as Twilio signs, forward-only, error codes kept."""
from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from gateway.channels.base import DeliveryStatus
from gateway.directory.models import ContactPoint
from gateway.settings import TwilioSettings
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.models import ConversationKind, Delivery, InboundEvent
from tests.fakes.twilio import sign_twilio_request

TOKEN = "status-test-auth-token-0123456789"
SID = "SM" + "a" * 32


@pytest.fixture
async def twilio_client(make_client):
    return await make_client(twilio=TwilioSettings("AC" + "b" * 32, TOKEN))


@pytest.fixture
async def sent_delivery(people, settings) -> Delivery:
    await send_communication(people, sender_external_id="t-rivera", kind=ConversationKind.CONVERSATION,
                             recipients=RecipientSpec(users=["g-ana"]), subject="s", body="b",
                             secret_key=settings.secret_key)
    delivery = await Delivery.get()
    await Delivery.filter(id=delivery.id).update(status=DeliveryStatus.SENT, provider_id=SID)
    return delivery


async def callback(client, delivery_id: int, status: str, *, error_code: str | None = None,
                   signature: str | None = None, sid: str = SID):
    """What Twilio POSTs: the signature is over our public URL (we sit behind a TLS proxy)."""
    url = f"https://gateway.test/webhooks/twilio/status?delivery={delivery_id}"
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "AccountSid": "AC" + "b" * 32,
            "To": "+14155550142", "From": "+14155550100", "ApiVersion": "2010-04-01"}
    if error_code:
        form["ErrorCode"] = error_code
    sig = signature if signature is not None else sign_twilio_request(TOKEN, url, form)
    parts = urlsplit(url)
    return await client.post(f"{parts.path}?{parts.query}", data=form, headers={"X-Twilio-Signature": sig})


async def status_of(delivery: Delivery) -> DeliveryStatus:
    await delivery.refresh_from_db()
    return delivery.status


async def test_delivered_moves_the_delivery_forward(twilio_client, sent_delivery):
    response = await callback(twilio_client, sent_delivery.id, "delivered")
    assert response.status == 204
    assert await status_of(sent_delivery) is DeliveryStatus.DELIVERED
    event = await InboundEvent.get(channel="sms_status")
    assert (event.outcome.value, event.provider_id) == ("applied", f"status:{SID}:delivered")


async def test_a_late_sent_never_moves_delivered_back(twilio_client, sent_delivery):
    await callback(twilio_client, sent_delivery.id, "delivered")
    await callback(twilio_client, sent_delivery.id, "sent")
    await callback(twilio_client, sent_delivery.id, "queued")
    assert await status_of(sent_delivery) is DeliveryStatus.DELIVERED


async def test_undelivered_keeps_the_error_code_and_30006_marks_the_phone_unreachable(twilio_client, sent_delivery):
    await callback(twilio_client, sent_delivery.id, "undelivered", error_code="30006")
    await sent_delivery.refresh_from_db()
    assert (sent_delivery.status, sent_delivery.error_code) == (DeliveryStatus.UNDELIVERED, "30006")
    phone = await ContactPoint.get(kind="phone", address="+14155550142")
    assert phone.problem == "unreachable"


async def test_a_retried_callback_is_stored_once(twilio_client, sent_delivery):
    for _ in range(3):
        assert (await callback(twilio_client, sent_delivery.id, "delivered")).status == 204
    assert await InboundEvent.filter(channel="sms_status").count() == 1


async def test_a_callback_before_our_sid_write_still_lands(twilio_client, sent_delivery):
    await Delivery.filter(id=sent_delivery.id).update(status=DeliveryStatus.QUEUED, provider_id=None)
    await callback(twilio_client, sent_delivery.id, "delivered")
    await sent_delivery.refresh_from_db()
    assert (sent_delivery.status, sent_delivery.provider_id) == (DeliveryStatus.DELIVERED, SID)


async def test_a_callback_for_another_sid_does_not_touch_the_delivery(twilio_client, sent_delivery):
    await callback(twilio_client, sent_delivery.id, "failed", sid="SM" + "c" * 32)
    assert await status_of(sent_delivery) is DeliveryStatus.SENT
    assert (await InboundEvent.get(channel="sms_status")).outcome.value == "ignored"


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl", sign_twilio_request("wrong-token", "https://gateway.test/webhooks/twilio/status", {})])
async def test_forged_or_missing_signatures_get_403_and_are_stored_as_rejected(twilio_client, sent_delivery, signature):
    response = await callback(twilio_client, sent_delivery.id, "failed", signature=signature)
    assert response.status == 403
    assert (await response.json())["error"]["code"] in ("bad_signature",)
    assert await status_of(sent_delivery) is DeliveryStatus.SENT
    event = await InboundEvent.get(channel="sms_status")
    assert event.outcome.value == "rejected" and "Signature" in event.reason


async def test_a_signature_for_the_internal_url_is_refused(twilio_client, sent_delivery):
    """Signed over http://127.0.0.1:PORT/... (what the proxy forwards to), not our public URL."""
    internal = str(twilio_client.make_url(f"/webhooks/twilio/status?delivery={sent_delivery.id}"))
    form = {"MessageSid": SID, "MessageStatus": "failed"}
    sig = sign_twilio_request(TOKEN, internal, form)
    response = await twilio_client.post(f"/webhooks/twilio/status?delivery={sent_delivery.id}", data=form,
                                        headers={"X-Twilio-Signature": sig})
    assert response.status == 403


async def test_missing_fields_are_a_400_and_stored(twilio_client, sent_delivery):
    url = f"https://gateway.test/webhooks/twilio/status?delivery={sent_delivery.id}"
    form = {"MessageSid": SID}
    response = await twilio_client.post(f"/webhooks/twilio/status?delivery={sent_delivery.id}", data=form,
                                        headers={"X-Twilio-Signature": sign_twilio_request(TOKEN, url, form)})
    assert response.status == 400
    assert (await InboundEvent.get(channel="sms_status")).outcome.value == "rejected"


async def test_without_twilio_configured_callbacks_are_refused(client, sent_delivery):
    response = await callback(client, sent_delivery.id, "delivered")
    assert response.status == 403
    assert await status_of(sent_delivery) is DeliveryStatus.SENT


async def test_the_whole_loop_through_the_fake_twilio(people, settings, fake_twilio, aiohttp_server, unused_tcp_port):
    """Dispatch through the real client to the fake, then the fake posts the signed callback to us."""
    from gateway.app import create_app
    from gateway.channels.twilio_sms import TwilioSmsChannel
    from gateway.threads.dispatcher import Dispatcher

    twilio = TwilioSettings(fake_twilio.account_sid, fake_twilio.auth_token, fake_twilio.url)
    live = replace(settings, twilio=twilio, public_url=f"http://127.0.0.1:{unused_tcp_port}")
    await aiohttp_server(create_app(live, run_worker=False, own_database=False), port=unused_tcp_port)
    await send_communication(people, sender_external_id="t-rivera", kind=ConversationKind.CONVERSATION,
                             recipients=RecipientSpec(users=["g-ana"]), subject="s", body="b",
                             secret_key=settings.secret_key)
    channel = await TwilioSmsChannel.open(twilio.account_sid, twilio.auth_token, api_base_url=twilio.api_base_url)
    try:
        await Dispatcher(live, {"sms": channel}).drain()
    finally:
        await channel.close()
    sid = fake_twilio.sent[0].sid
    response = await fake_twilio.send_status_callback(sid, "delivered")
    assert response.status == 204
    delivery = await Delivery.get()
    assert (delivery.status, delivery.provider_id) == (DeliveryStatus.DELIVERED, sid)
