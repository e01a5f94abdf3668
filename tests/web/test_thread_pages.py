"""The thread page, replies from the web, close/reopen, and the conversation lists."""
from __future__ import annotations

import re

from gateway.directory.models import AuditLog, Membership, School
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    ConversationState,
    Delivery,
    Message,
    Origin,
    Participant,
    RoutedBy,
)
from tests.web.conftest import csrf_of

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def send(school: School, *, to: list[str], body: str = "Field trip on Friday", private: bool = True,
               kind: ConversationKind = ConversationKind.CONVERSATION, subject: str = "Field trip") -> list[int]:
    result = await send_communication(school, sender_external_id="t-rivera", kind=kind,
                                      recipients=RecipientSpec(users=to), subject=subject, body=body,
                                      private=private, origin=Origin.WEB, secret_key="test-secret")
    return result.conversation_ids


async def test_a_teacher_sees_the_thread_with_channels_and_delivery_states(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    teacher = await signed_in("t-rivera")
    html = await (await teacher.get(f"/conversations/{cid}")).text()
    assert "Field trip on Friday" in html
    assert "Ana García" in html and "Text message" in html  # the delivery to Ana, by SMS
    assert "Waiting to be sent" in html
    assert "+14155550142" not in html and "ana@family.example" not in html


async def test_a_guardian_replies_from_the_page_and_the_teacher_is_told(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    ana = await signed_in("g-ana")
    token = await csrf_of(ana, f"/conversations/{cid}")
    response = await ana.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "¡Gracias!"},
                              allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith(f"/conversations/{cid}?sent=1#m")
    reply = await Message.filter(conversation_id=cid).order_by("-id").first()
    assert (reply.body, reply.origin, reply.routed_by) == ("¡Gracias!", Origin.WEB, RoutedBy.WEB)
    rivera = await Participant.get(conversation_id=cid, role="staff")
    assert await Delivery.filter(message_id=reply.id, recipient_id=rivera.user_id).count() == 1
    page = await (await ana.get(f"/conversations/{cid}")).text()
    assert "¡Gracias!" in page and "Tu mensaje se envió." not in page  # no notice without ?sent


async def test_another_family_gets_404_and_an_unknown_id_too(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    john = await signed_in("g-john")
    assert (await john.get(f"/conversations/{cid}")).status == 404
    assert (await john.get("/conversations/999999")).status == 404
    token = await csrf_of(john, "/inbox")
    before = await Message.all().count()
    response = await john.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "hi"})
    assert response.status == 404 and await Message.all().count() == before


async def test_families_never_see_each_others_replies_to_an_announcement(people, signed_in):
    [cid] = await send(people, to=["g-ana", "g-john"], private=False, kind=ConversationKind.ANNOUNCEMENT,
                       subject="Snow day", body="School is closed tomorrow")
    ana, john = await signed_in("g-ana"), await signed_in("g-john")
    token = await csrf_of(ana, f"/conversations/{cid}")
    await ana.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "Ana's private question"})
    page = await (await john.get(f"/conversations/{cid}")).text()
    assert "School is closed tomorrow" in page
    assert "Ana's private question" not in page and "Ana García" not in page
    teacher = await signed_in("t-rivera")
    assert "Ana&#39;s private question" in await (await teacher.get(f"/conversations/{cid}")).text()


async def test_hostile_bodies_are_escaped_everywhere(people, signed_in):
    [cid] = await send(people, to=["g-ana"], body=HOSTILE, subject=HOSTILE)
    for who, path in (("t-rivera", f"/conversations/{cid}"), ("t-rivera", "/conversations"),
                      ("g-ana", f"/conversations/{cid}"), ("g-ana", "/inbox")):
        html = await (await (await signed_in(who)).get(path)).text()
        assert "<script>alert" not in html and "<img src=x" not in html, (who, path)
        assert "&lt;script&gt;" in html


async def test_a_reply_without_csrf_or_too_long_or_empty_writes_nothing(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    ana = await signed_in("g-ana", max_body_chars=50)
    before = await Message.all().count()
    assert (await ana.post(f"/conversations/{cid}/messages", data={"body": "hi"})).status == 403
    token = await csrf_of(ana, f"/conversations/{cid}")
    too_long = await ana.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "x" * 51})
    assert too_long.status == 422 and "demasiado largo" in await too_long.text()  # Ana reads Spanish
    empty = await ana.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "   "})
    assert empty.status == 422
    assert await Message.all().count() == before


async def test_staff_close_and_reopen_with_an_audit_trail_and_families_cannot(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    teacher = await signed_in("t-rivera")
    token = await csrf_of(teacher, f"/conversations/{cid}")
    response = await teacher.post(f"/conversations/{cid}/state", data={"csrf_token": token, "state": "closed"},
                                  allow_redirects=False)
    assert response.status == 303
    assert (await Conversation.get(id=cid)).state is ConversationState.CLOSED
    assert await AuditLog.filter(action="conversation.closed", target=f"conversation:{cid}").exists()
    ana = await signed_in("g-ana")
    token = await csrf_of(ana, f"/conversations/{cid}")
    assert (await ana.post(f"/conversations/{cid}/state", data={"csrf_token": token, "state": "open"})).status == 403
    assert (await Conversation.get(id=cid)).state is ConversationState.CLOSED
    token = await csrf_of(teacher, f"/conversations/{cid}")
    await teacher.post(f"/conversations/{cid}/state", data={"csrf_token": token, "state": "open"})
    assert (await Conversation.get(id=cid)).state is ConversationState.OPEN


async def test_lists_show_unread_counts_that_clear_when_opened(people, signed_in):
    [cid] = await send(people, to=["g-ana"], subject="Lunch menu")
    ana = await signed_in("g-ana")
    inbox = await (await ana.get("/inbox")).text()
    assert re.search(r'class="count"[^>]*>1<', inbox) and "Lunch menu" in inbox
    await ana.get(f"/conversations/{cid}")
    assert 'class="count"' not in await (await ana.get("/inbox")).text()
    unread_only = await (await ana.get("/inbox?unread=1")).text()
    assert "Lunch menu" not in unread_only


async def test_the_staff_list_filters_by_state_kind_and_subject(people, signed_in):
    [first] = await send(people, to=["g-ana"], subject="Lunch menu")
    await send(people, to=["g-john"], subject="Snow day", kind=ConversationKind.ANNOUNCEMENT)
    await Conversation.filter(id=first).update(state=ConversationState.CLOSED)
    teacher = await signed_in("t-rivera")
    everything = await (await teacher.get("/conversations")).text()
    assert "Lunch menu" in everything and "Snow day" in everything
    assert "Lunch menu" not in await (await teacher.get("/conversations?state=open")).text()
    assert "Snow day" not in await (await teacher.get("/conversations?kind=conversation")).text()
    found = await (await teacher.get("/conversations?q=LUNCH")).text()
    assert "Lunch menu" in found and "Snow day" not in found
    assert "Snow day" not in await (await teacher.get("/conversations?q=%25")).text()  # LIKE wildcards are literal


async def test_pages_need_a_session_and_family_members_get_no_staff_pages(people, make_client, signed_in):
    anonymous = await make_client()
    response = await anonymous.get("/conversations", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/conversations"
    ana = await signed_in("g-ana")
    assert (await ana.get("/conversations")).status == 403
    teacher = await signed_in("t-rivera")
    response = await teacher.get("/inbox", allow_redirects=False)
    assert response.headers["Location"] == "/conversations"


async def test_pages_forbid_foreign_scripts_and_framing(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    response = await (await signed_in("g-ana")).get(f"/conversations/{cid}")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Referrer-Policy"] == "same-origin"


async def test_a_reply_posted_twice_is_written_once(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    for who in ("g-ana", "t-rivera"):
        client = await signed_in(who)
        page = await (await client.get(f"/conversations/{cid}")).text()
        data = {"csrf_token": re.search(r'name="csrf_token" value="(\w+)"', page).group(1),
                "submission": re.search(r'name="submission" value="([\w-]+)"', page).group(1), "body": f"From {who}"}
        first = await client.post(f"/conversations/{cid}/messages", data=data, allow_redirects=False)
        second = await client.post(f"/conversations/{cid}/messages", data=data, allow_redirects=False)
        assert first.headers["Location"] == second.headers["Location"]
        assert await Message.filter(body=f"From {who}").count() == 1


async def test_a_reply_from_an_unknown_sender_is_never_shown_to_families(people, signed_in):
    [cid] = await send(people, to=["g-ana", "g-john"], private=False, kind=ConversationKind.ANNOUNCEMENT,
                       body="Snow day tomorrow")
    await Message.create(conversation_id=cid, author_id=None, body="This is Grandma Rosa, call me at 555-0199",
                         origin=Origin.SMS, direction="inbound", routed_by=RoutedBy.TRIAGE, sender_unverified=True)
    for family in ("g-ana", "g-john"):
        page = await (await (await signed_in(family)).get(f"/conversations/{cid}")).text()
        assert "Snow day tomorrow" in page and "Grandma Rosa" not in page, family
    staff_page = await (await (await signed_in("t-rivera")).get(f"/conversations/{cid}")).text()
    assert "Grandma Rosa" in staff_page and "Unknown sender" in staff_page


async def test_a_teachers_answer_by_email_counts_as_unread_for_the_family(people, signed_in):
    [cid] = await send(people, to=["g-ana"], subject="Lunch menu")
    ana = await signed_in("g-ana")
    await ana.get(f"/conversations/{cid}")  # read
    rivera = (await Participant.get(conversation_id=cid, role="staff")).user_id
    await Message.create(conversation_id=cid, author_id=rivera, body="Answered from my phone",
                         origin=Origin.EMAIL, direction="inbound", routed_by=RoutedBy.REPLY_TOKEN)
    inbox = await (await ana.get("/inbox")).text()
    assert re.search(r'class="count"[^>]*>1<', inbox) and "Answered from my phone" in inbox


async def test_provider_error_text_is_for_admins_other_staff_see_its_code(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    await Delivery.filter(message__conversation_id=cid).update(
        status="failed", error_code="21610", error_reason="Attempt to send to unsubscribed recipient +14155550142")
    teacher = await signed_in("t-rivera")
    page = await (await teacher.get(f"/conversations/{cid}")).text()
    assert "21610" in page and "+14155550142" not in page
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    assert "unsubscribed recipient" in await (await teacher.get(f"/conversations/{cid}")).text()


async def test_staff_are_warned_when_a_reply_reaches_several_families(people, signed_in):
    [cid] = await send(people, to=["g-ana", "g-john"], private=False, kind=ConversationKind.ANNOUNCEMENT)
    page = await (await (await signed_in("t-rivera")).get(f"/conversations/{cid}")).text()
    assert "Your reply goes to everyone in this conversation: 2 people outside the staff." in page


async def test_a_family_writing_very_often_is_slowed_down(people, signed_in):
    [cid] = await send(people, to=["g-ana"])
    ana = await signed_in("g-ana")
    token = await csrf_of(ana, f"/conversations/{cid}")
    statuses = [(await ana.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": f"n{i}"},
                                allow_redirects=False)).status for i in range(21)]
    assert statuses[:20] == [303] * 20 and statuses[20] == 429
    assert await Message.filter(author_id=(await Participant.get(conversation_id=cid, role="guardian")).user_id).count() == 20


async def test_a_newsletter_takes_no_replies_from_families(people, signed_in):
    [cid] = await send(people, to=["g-john"], kind=ConversationKind.NEWSLETTER, subject="November news")
    john = await signed_in("g-john")
    page = await (await john.get(f"/conversations/{cid}")).text()
    assert "November news" in page and 'id="reply"' not in page
    token = await csrf_of(john, f"/conversations/{cid}")
    response = await john.post(f"/conversations/{cid}/messages", data={"csrf_token": token, "body": "Thanks"})
    assert response.status == 403 and await Message.filter(body="Thanks").count() == 0
    teacher_page = await (await (await signed_in("t-rivera")).get(f"/conversations/{cid}")).text()
    assert 'id="reply"' in teacher_page  # staff may still write in it
