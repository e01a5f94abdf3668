"""Guardians answer by plain SMS: signed webhooks in, keywords, routing, triage (DESIGN section 4)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.directory.models import AuditLog, ContactPoint, Membership
from gateway.settings import TwilioSettings
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    ConversationState,
    Delivery,
    InboundEvent,
    Message,
    Participant,
)
from gateway.web import keys
from tests.fakes.twilio import sign_twilio_request

TOKEN = "inbound-sms-auth-token-0123456789"
URL = "https://gateway.test/webhooks/twilio/sms"
ANA = "+14155550142"
sids = iter(f"SM{i:032x}" for i in range(1, 10_000))


@pytest.fixture
async def client(make_client):
    return await make_client(twilio=TwilioSettings("AC" + "d" * 32, TOKEN))


async def text(client, body: str, *, sender: str = ANA, to: str = "+14155550100", sid: str | None = None,
               signature: str | None = None, extra: dict | None = None):
    """Post a message exactly as Twilio does, then let the stored event be processed."""
    form = {"MessageSid": sid or next(sids), "AccountSid": "AC" + "d" * 32, "From": sender, "To": to, "Body": body,
            "NumMedia": "0", "ApiVersion": "2010-04-01", **(extra or {})}
    sig = signature if signature is not None else sign_twilio_request(TOKEN, URL, form)
    response = await client.post("/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": sig})
    await client.app[keys.INBOUND].wait_idle()
    return response


async def start(school, settings, sender="t-rivera", to=("g-ana",), subject="Field trip") -> int:
    result = await send_communication(school, sender_external_id=sender, kind=ConversationKind.CONVERSATION,
                                      recipients=RecipientSpec(users=list(to)), subject=subject, body="Please sign.",
                                      secret_key=settings.secret_key)
    return result.conversation_ids[0]


async def our_number(conversation_id: int, phone: str = ANA) -> str:
    return (await Delivery.get(message__conversation_id=conversation_id, channel="sms", address=phone)).sender


async def uid(ext: str) -> int:
    return (await Membership.get(external_id=ext)).user_id


async def test_a_text_reply_lands_in_its_conversation_and_the_teacher_is_told(client, people, settings):
    cid = await start(people, settings)
    response = await text(client, "Signed, it is in Lucía's bag", to=await our_number(cid))
    assert response.status == 200 and response.content_type == "application/xml"
    assert "<Message>" not in await response.text()  # no automatic answer to a real reply
    [reply] = await Message.filter(conversation_id=cid, direction="inbound")
    assert (reply.body, reply.origin.value, reply.routed_by.value) == ("Signed, it is in Lucía's bag", "sms", "sms_pool")
    assert reply.author_id == await uid("g-ana") and not reply.sender_unverified
    assert (await Participant.get(conversation_id=cid, user_id=await uid("g-ana"))).last_channel == "sms"
    told = await Delivery.get(message=reply)
    assert (told.recipient_id, told.channel) == (await uid("t-rivera"), "email")
    event = await InboundEvent.get(channel="sms")
    assert (event.outcome.value, event.message_id, event.school_id) == ("routed", reply.id, people.id)


async def test_two_teachers_two_numbers_each_answer_lands_in_its_own_thread(client, people, settings):
    rivera = await start(people, settings, sender="t-rivera", subject="Lucía's reading")
    chen = await start(people, settings, sender="t-chen", subject="Tom's math")
    assert await our_number(rivera) != await our_number(chen)
    await text(client, "For Ms. Rivera", to=await our_number(rivera))
    await text(client, "For Mr. Chen", to=await our_number(chen))
    assert [m.body for m in await Message.filter(conversation_id=rivera, direction="inbound")] == ["For Ms. Rivera"]
    assert [m.body for m in await Message.filter(conversation_id=chen, direction="inbound")] == ["For Mr. Chen"]


async def test_twilio_sending_the_same_message_three_times_posts_it_once(client, people, settings):
    cid = await start(people, settings)
    for _ in range(3):
        assert (await text(client, "Yes", sid="SM" + "e" * 32, to=await our_number(cid))).status == 200
    assert await Message.filter(conversation_id=cid, direction="inbound").count() == 1
    assert await InboundEvent.filter(channel="sms").count() == 1


async def test_stop_opts_out_in_the_senders_language_and_the_outbox_falls_back(client, people, settings):
    response = await text(client, " Stop. ")
    assert "no recibirá más mensajes de texto" in await response.text() or "STOP" in await response.text()
    assert "<Message>" in await response.text()
    phone = await ContactPoint.get(kind="phone", address=ANA)
    assert phone.opted_out_at is not None
    assert (await InboundEvent.get(channel="sms")).outcome.value == "opt_out"
    await start(people, settings)
    assert [d.channel for d in await Delivery.filter(recipient_id=await uid("g-ana"))] == ["email"]
    response = await text(client, "START")
    assert (await ContactPoint.get(kind="phone", address=ANA)).opted_out_at is None
    assert (await InboundEvent.filter(channel="sms").order_by("-id").first()).outcome.value == "opt_in"


async def test_help_answers_with_the_school_and_how_to_stop(client, people):
    body = await (await text(client, "help")).text()
    assert "Lincoln Elementary" in body and "STOP" in body


async def test_stop_in_a_sentence_goes_to_a_person_not_to_the_ledger(client, people, settings):
    cid = await start(people, settings)
    await text(client, "Please stop texting me at work, e-mail is better", to=await our_number(cid))
    assert (await ContactPoint.get(kind="phone", address=ANA)).opted_out_at is None
    assert await Message.filter(conversation_id=cid, direction="inbound").count() == 1


async def test_a_reply_after_close_reopens_the_conversation_and_tells_its_owner(client, people, settings):
    cid = await start(people, settings)
    await Conversation.filter(id=cid).update(state=ConversationState.CLOSED)
    await text(client, "One more question", to=await our_number(cid))
    assert (await Conversation.get(id=cid)).state is ConversationState.OPEN
    assert await AuditLog.exists(action="conversation.reopened", target=f"conversation:{cid}")
    reply = await Message.get(conversation_id=cid, direction="inbound")
    assert await Delivery.exists(message=reply, recipient_id=await uid("t-rivera"))


async def test_an_unknown_phone_is_kept_for_triage_and_can_be_attached(client, people, settings, auth):
    cid = await start(people, settings)
    await text(client, "Hi, this is Lucía's grandmother", sender="+12025550199")
    listing = await (await client.get("/api/v1/inbound?outcome=unmatched", headers=auth)).json()
    [item] = listing["items"]
    assert (item["channel"], item["sender"], item["text"]) == ("sms", "+12025550199", "Hi, this is Lucía's grandmother")
    response = await client.post(f"/api/v1/inbound/{item['id']}/attach", json={"conversation_id": cid}, headers=auth)
    assert response.status == 201
    message = await Message.get(id=(await response.json())["message_id"])
    assert (message.routed_by.value, message.sender_unverified, message.author_id) == ("triage", True, None)
    assert (await InboundEvent.get(id=item["id"])).outcome.value == "routed"
    again = await client.post(f"/api/v1/inbound/{item['id']}/attach", json={"conversation_id": cid}, headers=auth)
    assert again.status == 409


async def test_triage_is_scoped_to_the_school(client, people, settings, auth):
    from gateway.directory.schools import create_api_key

    await text(client, "Who is this?", sender="+12025550199")
    _, other_key = await create_api_key("other-school")
    other = {"Authorization": f"Bearer {other_key}"}
    assert (await (await client.get("/api/v1/inbound", headers=other)).json())["items"] == []
    event = await InboundEvent.get(channel="sms")
    response = await client.post(f"/api/v1/inbound/{event.id}/attach", json={"conversation_id": 1}, headers=other)
    assert response.status == 404
    assert (await client.get("/api/v1/inbound?outcome=bogus", headers=auth)).status == 422


async def test_a_guardian_may_text_about_a_conversation_that_reached_them_by_email(client, people, settings):
    # John prefers e-mail: the conversation never texted him, so no route exists for his phone.
    cid = await start(people, settings, to=("g-john",))
    await text(client, "Texting is easier for me", sender="+14155550143", to="+14155550101")
    reply = await Message.get(conversation_id=cid, direction="inbound")
    assert reply.routed_by.value == "sender_fallback" and reply.author_id == await uid("g-john")
    # The teacher's next reply goes back by SMS, the channel John last used.
    from gateway.threads.compose import post_staff_reply

    message, _ = await post_staff_reply(people, cid, sender_external_id="t-rivera", body="OK!", secret_key=settings.secret_key)
    [delivery] = await Delivery.filter(message=message)
    assert (delivery.channel, delivery.address) == ("sms", "+14155550143")


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl"])
async def test_forged_or_missing_signatures_get_403_and_are_stored(client, people, signature):
    response = await text(client, "STOP", signature=signature)
    assert response.status == 403
    event = await InboundEvent.get(channel="sms")
    assert event.outcome.value == "rejected" and "Signature" in event.reason and "STOP" in event.payload
    assert (await ContactPoint.get(kind="phone", address=ANA)).opted_out_at is None


async def test_behind_a_tls_proxy_the_public_url_is_what_counts(client, people):
    """Signed for the internal address the proxy forwards to: refused."""
    form = {"MessageSid": next(sids), "From": ANA, "To": "+14155550100", "Body": "hi"}
    internal = str(client.make_url("/webhooks/twilio/sms"))
    response = await client.post("/webhooks/twilio/sms", data=form,
                                 headers={"X-Twilio-Signature": sign_twilio_request(TOKEN, internal, form)})
    assert response.status == 403


async def test_a_messaging_service_number_routes_like_any_other(client, people, settings):
    cid = await start(people, settings)
    await text(client, "via the service", to=await our_number(cid), extra={"MessagingServiceSid": "MG" + "f" * 32})
    assert await Message.exists(conversation_id=cid, body="via the service")


async def test_missing_fields_and_non_utf8_bodies_are_400_and_stored(client, people):
    form = {"MessageSid": next(sids), "Body": "no sender"}
    response = await client.post("/webhooks/twilio/sms", data=form,
                                 headers={"X-Twilio-Signature": sign_twilio_request(TOKEN, URL, form)})
    assert response.status == 400
    response = await client.post("/webhooks/twilio/sms", data=b"Body=\xff\xfe&From=x",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    assert response.status == 400
    outcomes = [(e.outcome.value, e.reason) for e in await InboundEvent.all().order_by("id")]
    assert outcomes[0][0] == "rejected" and "From" in outcomes[0][1]
    assert outcomes[1] == ("rejected", "the form is not UTF-8")


async def test_a_stored_event_left_unprocessed_is_swept_up(client, people, settings):
    from gateway.channels.twilio_sms import parse_inbound_sms
    from gateway.threads.inbound import InboundProcessor, record_inbound

    cid = await start(people, settings)
    msg = parse_inbound_sms({"MessageSid": next(sids), "From": ANA, "To": await our_number(cid), "Body": "after crash"})
    event, _ = await record_inbound(msg)  # stored, then the process died before routing it
    await InboundEvent.filter(id=event.id).update(received_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    processor = InboundProcessor({"reply.school.test"})
    assert await processor.sweep() == 1
    assert await processor.sweep() == 0
    assert await Message.filter(conversation_id=cid, body="after crash").count() == 1


async def test_yes_is_an_answer_unless_the_phone_is_opted_out(client, people, settings):
    cid = await start(people, settings)
    response = await text(client, "Yes!", to=await our_number(cid))
    assert "<Message>" not in await response.text()
    assert await Message.exists(conversation_id=cid, body="Yes!")
    await text(client, "STOP")
    response = await text(client, "yes")
    assert "<Message>" in await response.text()
    assert (await ContactPoint.get(kind="phone", address=ANA)).opted_out_at is None
