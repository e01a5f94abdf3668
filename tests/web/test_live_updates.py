"""Live thread updates: a reply that arrives by SMS reaches a page open on the thread, without reload."""
from __future__ import annotations

import asyncio
import json

import pytest

from gateway.directory.models import Membership
from gateway.threads.models import Delivery
from gateway.web import keys
from tests.web.conftest import csrf_of, text_in, twilio_overrides
from tests.web.test_thread_pages import send

ANA = "+14155550142"


async def next_event(stream, timeout: float = 10.0) -> tuple[str, dict]:
    """The next named event of a server-sent event stream (comments and retry lines skipped)."""
    while True:
        block = (await asyncio.wait_for(stream.content.readuntil(b"\n\n"), timeout)).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            return fields["event"], json.loads(fields["data"])


async def ana_texts_back(client, cid: int, body: str):
    number = (await Delivery.get(message__conversation_id=cid, channel="sms", address=ANA)).sender
    response = await text_in(client, body, sender=ANA, to=number)
    assert response.status == 200


async def test_an_sms_reply_is_pushed_to_the_open_thread_escaped(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    teacher = await signed_in("t-rivera", **twilio_overrides())
    last = (await Delivery.get(message__conversation_id=cid, channel="sms")).message_id
    async with teacher.get(f"/conversations/{cid}/events?after={last}") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        await ana_texts_back(teacher, cid, "Sí, firmo <script>x()</script>")
        event, data = await next_event(stream)
    assert event == "message"
    assert "Sí, firmo &lt;script&gt;x()&lt;/script&gt;" in data["html"] and "<script>" not in data["html"]
    assert f'id="m{data["id"]}"' in data["html"] and "Ana García" in data["html"]


async def test_a_reconnecting_page_gets_what_it_missed_from_last_event_id(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    teacher = await signed_in("t-rivera", **twilio_overrides())
    first = (await Delivery.get(message__conversation_id=cid, channel="sms")).message_id
    await ana_texts_back(teacher, cid, "one")
    await teacher.app[keys.INBOUND].wait_idle()
    async with teacher.get(f"/conversations/{cid}/events", headers={"Last-Event-ID": str(first)}) as stream:
        event, data = await next_event(stream)  # caught up at once, without waiting for news
    assert event == "message" and ">one<" in data["html"]


async def test_another_familys_stream_is_404(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    john = await signed_in("g-john")
    assert (await john.get(f"/conversations/{cid}/events")).status == 404


async def test_a_guardian_watching_sees_the_teachers_web_reply(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    ana = await signed_in("g-ana")
    teacher = await signed_in("t-rivera", client=None)
    last = (await Delivery.filter(message__conversation_id=cid).first()).message_id
    async with ana.get(f"/conversations/{cid}/events?after={last}") as stream:
        token = await csrf_of(teacher, f"/conversations/{cid}")
        await teacher.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "See you Friday"})
        # The two clients are two app instances on one database: on SQLite each has its own
        # in-process hub, so the teacher's app signals only its own pages; wake Ana's app too.
        await ana.app[keys.LIVE].publish(cid)
        event, data = await next_event(stream)
    assert event == "message" and "See you Friday" in data["html"]
    assert "Waiting to be sent" not in data["html"]  # families never see delivery states


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
async def test_on_postgresql_a_reply_routed_by_one_process_reaches_a_page_served_by_another(db, people, signed_in,
                                                                                            make_client):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    [cid] = await send(people, to=["g-ana"])
    page_server = await signed_in("t-rivera")
    webhook_server = await make_client(public_url="http://127.0.0.1:8080", **twilio_overrides())
    last = (await Delivery.get(message__conversation_id=cid, channel="sms")).message_id
    async with page_server.get(f"/conversations/{cid}/events?after={last}") as stream:
        await ana_texts_back(webhook_server, cid, "Routed elsewhere")
        event, data = await next_event(stream)
    assert event == "message" and "Routed elsewhere" in data["html"]


async def test_shutdown_ends_open_streams(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    teacher = await signed_in("t-rivera")
    stream = await teacher.get(f"/conversations/{cid}/events")
    teacher.app[keys.LIVE].stop_streams()
    body = await asyncio.wait_for(stream.read(), 5)
    assert body.startswith(b"retry:")


async def test_signing_out_ends_an_open_stream(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    teacher = await signed_in("t-rivera")
    last = (await Delivery.filter(message__conversation_id=cid).first()).message_id
    stream = await teacher.get(f"/conversations/{cid}/events?after={last}")
    token = await csrf_of(teacher, "/conversations")
    await teacher.post("/logout", data={"csrf_token": token})
    await teacher.app[keys.LIVE].publish(cid)
    body = await asyncio.wait_for(stream.read(), 5)  # the stream ended instead of sending the thread
    assert b"event: message" not in body


async def test_closing_shows_on_every_open_page(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    ana, teacher = await signed_in("g-ana"), await signed_in("t-rivera")
    last = (await Delivery.filter(message__conversation_id=cid).first()).message_id
    async with ana.get(f"/conversations/{cid}/events?after={last}") as stream:
        token = await csrf_of(teacher, f"/conversations/{cid}")
        await teacher.post(f"/conversations/{cid}/state", data={"csrf_token": token, "state": "closed"})
        await ana.app[keys.LIVE].publish(cid)  # two apps in one process on SQLite: wake Ana's too
        event, data = await next_event(stream)
    assert event == "state" and data["state"] == "closed" and "Cerrada" in data["html"]  # Ana reads Spanish
