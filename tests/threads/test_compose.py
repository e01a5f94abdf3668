"""POST /api/v1/communications and conversation replies: what gets written, in one transaction."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.channels.base import DeliveryStatus
from gateway.directory.models import ContactPoint, Membership, School
from gateway.threads.models import (
    Conversation,
    Delivery,
    Message,
    Participant,
    ReplyToken,
    SmsRoute,
)


async def user_id(ext: str) -> int:
    return (await Membership.get(external_id=ext)).user_id


async def deliveries_by_recipient() -> dict[str, list[tuple[str, str]]]:
    ext = {m.user_id: m.external_id for m in await Membership.all()}
    out: dict[str, list[tuple[str, str]]] = {}
    for d in await Delivery.all().order_by("id"):
        out.setdefault(ext[d.recipient_id], []).append((d.channel, d.status.value))
    return out


def communication(**overrides):
    body = {"kind": "conversation", "sender": "t-rivera", "recipients": {"users": ["g-ana"]},
            "subject": "Field trip", "body": "Please sign the slip."}
    body.update(overrides)
    return body


async def test_a_conversation_writes_message_participants_tokens_and_deliveries(client, auth, people):
    response = await client.post("/api/v1/communications", json=communication(), headers=auth)
    assert response.status == 201
    answer = await response.json()
    assert answer["deliveries"] == 1 and len(answer["conversation_ids"]) == 1
    conversation = await Conversation.get(id=answer["conversation_ids"][0])
    assert (conversation.kind.value, conversation.subject, conversation.state.value) == ("conversation", "Field trip", "open")
    [message] = await Message.filter(conversation=conversation)
    assert message.body == "Please sign the slip." and message.origin.value == "api"
    assert message.author_id == await user_id("t-rivera")
    participants = {p.user_id: p for p in await Participant.filter(conversation=conversation)}
    assert participants[await user_id("t-rivera")].is_owner
    assert await user_id("g-ana") in participants
    assert await ReplyToken.filter(conversation=conversation).count() == 2
    [delivery] = await Delivery.filter(message=message)
    assert (delivery.channel, delivery.address, delivery.status) == ("sms", "+14155550142", DeliveryStatus.QUEUED)
    assert delivery.sender in people.sms_numbers


async def test_roles_and_sections_resolve_to_people_and_never_the_sender(client, auth, people):
    body = communication(kind="announcement", recipients={"roles": ["staff"], "sections": ["4B"]})
    response = await client.post("/api/v1/communications", json=body, headers=auth)
    assert response.status == 201
    assert set(await deliveries_by_recipient()) == {"t-chen", "s-tom", "g-john"}


async def test_both_preference_gets_sms_and_email(client, auth, people):
    await client.post("/api/v1/communications", json=communication(kind="announcement", recipients={"users": ["g-wei"]}), headers=auth)
    assert sorted((await deliveries_by_recipient())["g-wei"]) == [("email", "queued"), ("sms", "queued")]


async def test_newsletter_goes_by_email_and_as_a_short_link_by_sms(client, auth, people):
    body = communication(kind="newsletter", recipients={"users": ["g-ana", "g-wei"]})
    await client.post("/api/v1/communications", json=body, headers=auth)
    assert await deliveries_by_recipient() == {"g-ana": [("sms", "queued")], "g-wei": [("email", "queued")]}


async def test_opted_out_phone_falls_back_and_nothing_usable_is_suppressed(client, auth, people):
    ana = await user_id("g-ana")
    now = datetime.now(timezone.utc)
    await ContactPoint.filter(user_id=ana, kind="phone").update(opted_out_at=now)
    await client.post("/api/v1/communications", json=communication(), headers=auth)
    assert (await deliveries_by_recipient())["g-ana"] == [("email", "queued")]

    await ContactPoint.filter(user_id=ana, kind="email").update(bouncing_at=now)
    response = await client.post("/api/v1/communications", json=communication(), headers=auth)
    assert (await response.json())["suppressed"] == 1
    suppressed = await Delivery.filter(status=DeliveryStatus.SUPPRESSED).get()
    assert (suppressed.channel, suppressed.error_reason) == ("sms", "opted_out")


async def test_private_makes_one_conversation_per_recipient(client, auth, people):
    body = communication(recipients={"users": ["g-ana", "g-john"]}, private=True)
    answer = await (await client.post("/api/v1/communications", json=body, headers=auth)).json()
    assert len(answer["conversation_ids"]) == 2
    for cid in answer["conversation_ids"]:
        members = await Participant.filter(conversation_id=cid).count()
        assert members == 2  # the teacher and one guardian: families never see each other


async def test_a_guardians_open_conversations_use_different_numbers(client, auth, people):
    for sender in ("t-rivera", "t-chen"):
        await client.post("/api/v1/communications", json=communication(sender=sender), headers=auth)
    senders = [d.sender for d in await Delivery.filter(channel="sms").order_by("id")]
    assert len(set(senders)) == 2
    routes = await SmsRoute.filter(phone="+14155550142").values_list("our_number", "conversation_id")
    assert len({number for number, _ in routes}) == 2 and len({conv for _, conv in routes}) == 2


async def test_with_every_number_in_use_the_least_recently_used_route_moves(client, auth, people):
    ids = []
    for _ in range(3):
        answer = await (await client.post("/api/v1/communications", json=communication(), headers=auth)).json()
        ids.append(answer["conversation_ids"][0])
    first, _, third = [await Delivery.filter(message__conversation_id=c, channel="sms").get() for c in ids]
    assert third.sender == first.sender
    route = await SmsRoute.get(phone="+14155550142", our_number=first.sender)
    assert route.conversation_id == ids[2]


async def test_quiet_hours_defer_sms_but_not_urgent_sms_or_email(client, auth, people: School):
    people.quiet_hours_start, people.quiet_hours_end = 0, 24 * 60 - 1  # quiet almost all day, in UTC
    people.timezone = "UTC"
    await people.save()
    now = datetime.now(timezone.utc)
    await client.post("/api/v1/communications", json=communication(recipients={"users": ["g-wei"]}, kind="announcement"), headers=auth)
    sms = await Delivery.get(channel="sms")
    email = await Delivery.get(channel="email")
    assert sms.next_attempt_at > now + timedelta(minutes=1)
    assert email.next_attempt_at <= now + timedelta(seconds=5)
    await Delivery.all().delete()
    await client.post("/api/v1/communications", json=communication(urgent=True), headers=auth)
    assert (await Delivery.get(channel="sms")).next_attempt_at <= now + timedelta(seconds=5)


async def test_staff_reply_goes_to_the_other_participants(client, auth, people):
    answer = await (await client.post("/api/v1/communications", json=communication(), headers=auth)).json()
    cid = answer["conversation_ids"][0]
    ana = await user_id("g-ana")
    await Participant.filter(conversation_id=cid, user_id=ana).update(last_channel="email")
    response = await client.post(f"/api/v1/conversations/{cid}/messages",
                                 json={"sender": "t-chen", "body": "Also: bring a lunch."}, headers=auth)
    assert response.status == 201
    reply = await Message.get(id=(await response.json())["message_id"])
    recipients = {(await Membership.get(user_id=d.recipient_id)).external_id: d.channel
                  for d in await Delivery.filter(message=reply)}
    assert recipients == {"g-ana": "email", "t-rivera": "email"}  # Ana last wrote by e-mail


async def test_get_conversation_shows_messages_and_delivery_states(client, auth, people):
    answer = await (await client.post("/api/v1/communications", json=communication(), headers=auth)).json()
    cid = answer["conversation_ids"][0]
    data = await (await client.get(f"/api/v1/conversations/{cid}", headers=auth)).json()
    assert {p["external_id"] for p in data["participants"]} == {"t-rivera", "g-ana"}
    [message] = data["messages"]
    assert message["author"] == "t-rivera" and message["direction"] == "outbound" and message["channel"] == "api"
    assert message["deliveries"] == [{"id": message["deliveries"][0]["id"], "recipient": "g-ana", "channel": "sms",
                                      "status": "queued", "error_code": None, "error_reason": None}]


@pytest.mark.parametrize("body, status, code", [
    (communication(sender="nobody"), 404, "unknown_sender"),
    (communication(sender="g-john"), 422, "sender_not_staff"),
    (communication(recipients={"users": ["g-ana", "ghost"]}), 422, "unknown_recipient"),
    (communication(recipients={"sections": ["9Z"]}), 422, "unknown_section"),
    (communication(recipients={}), 422, "no_recipients"),
    (communication(recipients={"users": ["t-rivera"]}), 422, "no_recipients"),
    (communication(kind="memo"), 422, "invalid"),
    (communication(body="   "), 422, "invalid"),
    (communication(colour="red"), 422, "invalid"),
    (communication(body="x" * 20_001), 413, "body_too_large"),
])
async def test_bad_communications_are_refused_and_write_nothing(client, auth, people, body, status, code):
    response = await client.post("/api/v1/communications", json=body, headers=auth)
    assert response.status == status
    error = (await response.json())["error"]
    assert error["code"] == code and error["message"]
    assert await Conversation.all().count() == 0 and await Delivery.all().count() == 0


async def test_another_schools_conversation_is_not_found(client, auth, people):
    from gateway.directory.schools import create_api_key

    _, other_key = await create_api_key("other-school")
    answer = await (await client.post("/api/v1/communications", json=communication(), headers=auth)).json()
    cid = answer["conversation_ids"][0]
    other = {"Authorization": f"Bearer {other_key}"}
    assert (await client.get(f"/api/v1/conversations/{cid}", headers=other)).status == 404
    response = await client.post(f"/api/v1/conversations/{cid}/messages", json={"sender": "t-rivera", "body": "hi"}, headers=other)
    assert response.status == 404
    assert await Message.all().count() == 1


async def test_a_failure_half_way_leaves_nothing_behind(client, auth, people, monkeypatch):
    from gateway.threads import compose

    async def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(compose, "assign_sms_senders", explode)
    response = await client.post("/api/v1/communications", json=communication(), headers=auth)
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "internal"
    assert await Conversation.all().count() == 0 and await Message.all().count() == 0
    assert await Participant.all().count() == 0 and await ReplyToken.all().count() == 0
