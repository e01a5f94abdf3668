"""/triage: staff admins put unmatched replies into conversations; nobody else sees them."""
from __future__ import annotations

from gateway.directory.models import Membership
from gateway.threads.models import InboundEvent, InboundOutcome, Message, RoutedBy
from gateway.web import keys
from tests.web.conftest import csrf_of, text_in, twilio_overrides
from tests.web.test_thread_pages import send

STRANGER = "+12025550199"


async def unmatched(client, people, body="Hi, this is Lucía's grandmother <b>!</b>"):
    response = await text_in(client, body, sender=STRANGER, to=people.sms_numbers[0])
    assert response.status == 200
    await client.app[keys.INBOUND].wait_idle()
    return await InboundEvent.get(outcome=InboundOutcome.UNMATCHED)


async def test_an_admin_attaches_an_unmatched_text_to_a_conversation(people, signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    [cid] = await send(people, to=["g-ana"])
    admin = await signed_in("t-rivera", **twilio_overrides())
    event = await unmatched(admin, people)
    page = await (await admin.get("/triage")).text()
    assert "Lucía&#39;s grandmother &lt;b&gt;!&lt;/b&gt;" in page and STRANGER in page
    token = await csrf_of(admin, "/triage")
    response = await admin.post(f"/triage/{event.id}/attach", data={"csrf_token": token, "conversation_number": str(cid)},
                                allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith(f"/conversations/{cid}#m")
    message = await Message.get(conversation_id=cid, routed_by=RoutedBy.TRIAGE)
    assert message.body == "Hi, this is Lucía's grandmother <b>!</b>"
    assert (await InboundEvent.get(id=event.id)).outcome is InboundOutcome.ROUTED
    again = await admin.post(f"/triage/{event.id}/attach", data={"csrf_token": token, "conversation_number": str(cid)})
    assert again.status == 409
    assert await Message.filter(routed_by=RoutedBy.TRIAGE).count() == 1


async def test_a_wrong_conversation_number_is_a_clear_error_and_nothing_moves(people, signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    admin = await signed_in("t-rivera", **twilio_overrides())
    event = await unmatched(admin, people)
    token = await csrf_of(admin, "/triage")
    response = await admin.post(f"/triage/{event.id}/attach", data={"csrf_token": token, "conversation_number": "999"})
    assert response.status == 422 and "no conversation with that number" in await response.text()
    assert (await InboundEvent.get(id=event.id)).outcome is InboundOutcome.UNMATCHED


async def test_teachers_who_are_not_admins_and_families_get_403(people, signed_in):
    teacher = await signed_in("t-chen", **twilio_overrides())
    event = await unmatched(teacher, people)
    assert (await teacher.get("/triage")).status == 403
    token = await csrf_of(teacher, "/conversations")
    assert (await teacher.post(f"/triage/{event.id}/attach", data={"csrf_token": token, "conversation_number": "1"})).status == 403
    ana = await signed_in("g-ana")
    assert (await ana.get("/triage")).status == 403
    assert "/triage" not in await (await teacher.get("/conversations")).text()
    assert (await InboundEvent.get(id=event.id)).outcome is InboundOutcome.UNMATCHED


async def test_two_attaches_racing_post_the_reply_once(people, signed_in):
    import asyncio

    from gateway.errors import Conflict
    from gateway.threads.triage import attach_unmatched

    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    [cid] = await send(people, to=["g-ana"])
    admin = await signed_in("t-rivera", **twilio_overrides())
    event = await unmatched(admin, people)
    results = await asyncio.gather(attach_unmatched(people.id, event.id, cid), attach_unmatched(people.id, event.id, cid),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Message"]
    assert isinstance(next(r for r in results if isinstance(r, Exception)), Conflict)
    assert await Message.filter(routed_by=RoutedBy.TRIAGE).count() == 1
