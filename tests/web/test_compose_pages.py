"""The staff compose page: form, preview (who gets it, by which channel, who does not and why), send."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.directory.models import (
    ContactKind,
    ContactPoint,
    Membership,
    Role,
    School,
    User,
)
from gateway.directory.schools import create_api_key
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    Delivery,
    Message,
    Origin,
    Participant,
)
from gateway.web import pages_compose
from tests.web.conftest import csrf_of

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def post_compose(client: TestClient, **fields: Any) -> Any:
    """Submit the compose form as a browser would (the CSRF token read from the page)."""
    token = await csrf_of(client, "/compose")
    data = {"csrf_token": token, "kind": "conversation", "subject": "Field trip", "body": "Bus leaves at 8.", **fields}
    return await client.post("/compose", data={k: v for k, v in data.items() if v is not None}, allow_redirects=False)


async def written() -> tuple[int, int, int, int]:
    return (await Conversation.all().count(), await Message.all().count(), await Delivery.all().count(),
            await Participant.all().count())


def part(html: str, element_id: str) -> str:
    """The page from the element with this id to the end of its section."""
    start = html.index(f'id="{element_id}"')
    return html[start:html.index("</section>", start)]


async def user_id(external_id: str) -> int:
    return (await Membership.get(external_id=external_id)).user_id


# -- the form ----------------------------------------------------------------------------------------


async def test_the_form_lists_guardians_students_and_sections_by_name_and_never_an_address(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await teacher.get("/compose")
    html = await response.text()
    assert response.status == 200
    for name in ("Ana García (Lucía)", "John Smith (Tom)", "Li Wei (Tom)", "Lucía", "3A", "4B"):
        assert name in html
    assert 'value="g-ana"' in html and 'value="s-tom"' in html
    assert "+1415555" not in html and "@family.example" not in html and "@school.example" not in html
    assert 'name="csrf_token"' in html and '<legend>To</legend>' in html
    assert '<label for="subject">' in html and '<label for="body">' in html


async def test_anonymous_visitors_sign_in_first_and_families_are_turned_away(people, make_client, signed_in):
    anonymous = await make_client()
    response = await anonymous.get("/compose", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/compose"
    ana = await signed_in("g-ana")
    assert (await ana.get("/compose")).status == 403
    token = await csrf_of(ana, "/inbox")
    response = await ana.post("/compose", data={"csrf_token": token, "to": "guardians", "kind": "conversation",
                                                "body": "hi", "action": "send"})
    assert response.status == 403
    assert await written() == (0, 0, 0, 0)


async def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await teacher.post("/compose", data={"to": "guardian", "guardian": "g-ana", "kind": "conversation",
                                                    "body": "hi", "action": "send"})
    assert response.status == 403
    assert await written() == (0, 0, 0, 0)


# -- the preview -------------------------------------------------------------------------------------


async def test_the_preview_of_a_message_to_one_guardian_shows_her_channel_and_writes_nothing(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="guardian", guardian="g-ana")
    html = await response.text()
    assert response.status == 200
    receiving = part(html, "receiving")
    assert "1 person will receive it" in receiving
    assert "Ana García" in receiving and "Text message" in receiving  # she prefers SMS
    assert 'id="not-receiving"' not in html
    assert 'value="send"' in html and 'value="edit"' in html
    assert "+14155550142" not in html and "ana@family.example" not in html
    assert await written() == (0, 0, 0, 0)


async def test_the_preview_says_who_will_not_receive_it_and_why_and_notes_fallbacks(people, signed_in):
    ana, john = await user_id("g-ana"), await user_id("g-john")
    now = datetime.now(timezone.utc)
    await ContactPoint.filter(user_id=ana, kind=ContactKind.PHONE).update(opted_out_at=now)
    await ContactPoint.filter(user_id=ana, kind=ContactKind.EMAIL).delete()
    await ContactPoint.filter(user_id=john, kind=ContactKind.EMAIL).update(bouncing_at=now)
    teacher = await signed_in("t-rivera")
    html = await (await post_compose(teacher, to="section", section="3A")).text()
    receiving, not_receiving = part(html, "receiving"), part(html, "not-receiving")
    assert "John Smith" in receiving and "Text message (instead of e-mail)" in receiving
    assert "Ana García" in not_receiving and "opted out of text messages" in not_receiving
    assert "Lucía" in not_receiving and "no e-mail address" in not_receiving  # students without contacts
    assert "Ms. Rivera" not in receiving + not_receiving  # the sender is never a recipient
    assert "1 person will receive it" in receiving
    assert await written() == (0, 0, 0, 0)


async def test_a_newsletter_preview_shows_the_text_message_link_and_who_unsubscribed(people, signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)  # school-wide audiences
    await User.filter(id=await user_id("g-wei")).update(newsletters_unsubscribed_at=datetime.now(timezone.utc))
    teacher = await signed_in("t-rivera")
    html = await (await post_compose(teacher, to="guardians", kind="newsletter")).text()
    assert "Text message with a link" in part(html, "receiving")  # Ana prefers SMS
    assert "Li Wei" in part(html, "not-receiving") and "unsubscribed from newsletters" in html


async def test_hostile_subjects_and_bodies_are_escaped_in_the_preview_and_the_form(people, signed_in):
    teacher = await signed_in("t-rivera")
    for action in ("preview", "edit"):
        html = await (await post_compose(teacher, to="guardian", guardian="g-ana", subject=HOSTILE, body=HOSTILE,
                                         action=action)).text()
        assert "<script>alert" not in html and "<img src=x" not in html, action
        assert "&lt;script&gt;" in html, action
    assert await written() == (0, 0, 0, 0)


async def test_edit_brings_back_the_filled_form(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="section", section="4B", kind="announcement", subject="Snow day",
                                  body="No school tomorrow.", urgent="1", action="edit")
    html = await response.text()
    assert response.status == 200
    assert 'id="to-section" name="to" value="section" checked' in html
    assert '<option value="4B" selected>' in html
    assert 'value="announcement" aria-describedby="kind-announcement-hint" checked' in html
    assert 'value="Snow day"' in html and "No school tomorrow.</textarea>" in html
    assert 'id="urgent" name="urgent" value="1" aria-describedby="urgent-hint" checked' in html


async def test_the_preview_caps_its_rows_but_keeps_the_counts_exact(people, signed_in, monkeypatch):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)  # school-wide audiences
    monkeypatch.setattr(pages_compose, "PREVIEW_ROWS", 1)
    teacher = await signed_in("t-rivera")
    html = await (await post_compose(teacher, to="guardians")).text()
    receiving = part(html, "receiving")
    assert "3 people will receive it" in receiving and "and 2 more people" in receiving
    assert receiving.count("<tr><td>") == 1


async def test_the_preview_warns_that_quiet_hours_hold_text_messages_unless_urgent(people, signed_in):
    now = datetime.now(timezone.utc)  # the school's time zone is UTC
    minute = now.hour * 60 + now.minute
    await School.filter(id=people.id).update(quiet_hours_start=(minute - 60) % 1440, quiet_hours_end=(minute + 60) % 1440)
    teacher = await signed_in("t-rivera")
    html = await (await post_compose(teacher, to="guardian", guardian="g-ana")).text()
    assert "text messages will wait until" in html
    html = await (await post_compose(teacher, to="guardian", guardian="g-ana", urgent="1")).text()
    assert "text messages will wait until" not in html and "Urgent" in html


# -- sending -----------------------------------------------------------------------------------------


async def test_sending_to_one_guardian_creates_the_conversation_and_opens_it(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="guardian", guardian="g-ana", action="send")
    assert response.status == 303
    conversation = await Conversation.get()
    assert response.headers["Location"] == f"/conversations/{conversation.id}?sent=1"
    assert (conversation.kind, conversation.subject, conversation.school_id) == (
        ConversationKind.CONVERSATION, "Field trip", people.id)
    message = await Message.get(conversation=conversation)
    assert (message.body, message.origin, message.author_id) == ("Bus leaves at 8.", Origin.WEB,
                                                                 await user_id("t-rivera"))
    [delivery] = await Delivery.filter(message=message)
    assert (delivery.recipient_id, delivery.channel, delivery.address) == (
        await user_id("g-ana"), "sms", "+14155550142")
    members = set(await Participant.filter(conversation=conversation).values_list("user_id", flat=True))
    assert members == {await user_id("t-rivera"), await user_id("g-ana")}
    page = await (await teacher.get(response.headers["Location"])).text()
    assert "Your message was sent." in page and "Bus leaves at 8." in page


async def test_a_private_message_to_a_section_makes_one_conversation_per_recipient(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="section", section="4B", private="1", action="send")
    # 4B: Mr. Chen, Tom and John Smith; the sender is not in it.
    assert response.status == 303 and response.headers["Location"] == "/conversations?sent=3"
    rivera = await user_id("t-rivera")
    groups = []
    for conversation in await Conversation.all():
        members = set(await Participant.filter(conversation=conversation).values_list("user_id", flat=True))
        groups.append(members - {rivera})
    assert sorted(groups, key=min) == sorted(
        [{await user_id("t-chen")}, {await user_id("s-tom")}, {await user_id("g-john")}], key=min)
    assert await Message.filter(origin=Origin.WEB).count() == 3


async def test_the_guardians_of_a_student_get_one_shared_conversation(people, signed_in):
    teacher = await signed_in("t-rivera")
    html = await (await post_compose(teacher, to="student_guardians", student="s-tom")).text()
    assert "The guardians of Tom" in html
    receiving = part(html, "receiving")
    assert "John Smith" in receiving and "Li Wei" in receiving and "2 people will receive it" in receiving
    response = await post_compose(teacher, to="student_guardians", student="s-tom", action="send")
    assert response.status == 303
    conversation = await Conversation.get()
    members = set(await Participant.filter(conversation=conversation).values_list("user_id", flat=True))
    assert members == {await user_id("t-rivera"), await user_id("g-john"), await user_id("g-wei")}
    # Li Wei prefers both channels: an e-mail and a text message.
    wei = await Delivery.filter(recipient_id=await user_id("g-wei")).values_list("channel", flat=True)
    assert sorted(wei) == ["email", "sms"]


async def test_a_section_message_reaches_its_members_but_not_the_sender(people, signed_in):
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="section", section="3A", kind="announcement", action="send")
    assert response.status == 303
    conversation = await Conversation.get()
    assert conversation.kind is ConversationKind.ANNOUNCEMENT
    members = set(await Participant.filter(conversation=conversation).values_list("user_id", flat=True))
    section_3a = {await user_id(e) for e in ("t-rivera", "s-lucia", "s-tom", "g-ana", "g-john")}
    assert members == section_3a
    assert not await Delivery.filter(recipient_id=await user_id("t-rivera")).exists()


async def test_all_guardians_and_all_staff(people, signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)  # school-wide audiences
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="guardians", kind="announcement", action="send")
    assert response.status == 303
    guardians = {await user_id(e) for e in ("g-ana", "g-john", "g-wei")}
    recipients = set(await Delivery.all().values_list("recipient_id", flat=True))
    assert recipients == guardians
    html = await (await post_compose(teacher, to="staff")).text()
    receiving = part(html, "receiving")
    assert "Mr. Chen" in receiving and "Ms. Rivera" not in receiving and "1 person will receive it" in receiving


async def test_a_staff_member_of_two_schools_chooses_one_and_only_theirs(people, signed_in):
    other, _key = await create_api_key("roosevelt")
    await Membership.create(school=other, user_id=await user_id("t-rivera"), external_id="rivera-2", role=Role.STAFF)
    stranger, _key = await create_api_key("jefferson")
    teacher = await signed_in("t-rivera")
    html = await (await teacher.get("/compose")).text()
    assert 'id="school-choice" name="school"' in html and "Roosevelt" in html
    assert f'name="school" value="{people.id}"' in html
    assert "Ana García" not in await (await teacher.get(f"/compose?school={other.id}")).text()
    assert (await teacher.get(f"/compose?school={stranger.id}")).status == 403
    response = await post_compose(teacher, school=str(stranger.id), to="guardians", action="send")
    assert response.status == 403 and await written() == (0, 0, 0, 0)


# -- bad input ---------------------------------------------------------------------------------------


async def other_school_guardian() -> School:
    other, _key = await create_api_key("roosevelt")
    await upsert_users(other, [UserIn.model_validate(
        {"external_id": "g-olga", "role": "guardian", "name": "Olga Petrova", "email": "olga@family.example"})])
    return other


async def test_an_unknown_section_or_another_schools_guardian_is_a_form_error(people, signed_in):
    await other_school_guardian()
    teacher = await signed_in("t-rivera")
    for fields, error in (({"to": "section", "section": "9Z"}, "There is no section 9Z in this school."),
                          ({"to": "guardian", "guardian": "g-olga"}, "That guardian is not in this school"),
                          ({"to": "guardian", "guardian": "t-chen"}, "That guardian is not in this school"),
                          ({"to": "student_guardians", "student": "g-ana"}, "That student is not in this school"),
                          ({"to": "somebody"}, "Choose who receives the message."),
                          ({"to": "guardian", "guardian": ""}, "Choose a guardian.")):
        for action in ("preview", "send"):
            response = await post_compose(teacher, action=action, body="Keep what I typed", **fields)
            html = await response.text()
            assert response.status == 422, (fields, action)
            assert error in html and 'role="alert"' in html, (fields, action)
            assert "Keep what I typed</textarea>" in html
    assert await written() == (0, 0, 0, 0)


async def test_a_student_without_guardians_is_a_form_error(people, signed_in):
    await upsert_users(people, [UserIn.model_validate({"external_id": "s-max", "role": "student", "name": "Max"})])
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="student_guardians", student="s-max", action="send")
    assert response.status == 422 and "Max has no guardian in the directory." in await response.text()
    assert await written() == (0, 0, 0, 0)


async def test_an_empty_or_over_long_message_or_subject_is_a_form_error(people, signed_in):
    teacher = await signed_in("t-rivera", max_body_chars=50)
    for fields, error in (({"body": "x" * 51}, "The message is too long: 50 characters at most."),
                          ({"body": "   "}, "Write a message first."),
                          ({"subject": "s" * 201}, "The subject is too long: 200 characters at most."),
                          ({"kind": "telegram"}, "Choose what kind of message this is.")):
        for action in ("preview", "send"):
            response = await post_compose(teacher, to="guardian", guardian="g-ana", action=action, **fields)
            assert response.status == 422, (fields, action)
            assert error in await response.text(), (fields, action)
    assert await written() == (0, 0, 0, 0)


async def test_nobody_to_send_to_is_a_form_error(people, signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)  # school-wide audiences
    await Membership.filter(external_id="t-chen").delete()
    teacher = await signed_in("t-rivera")
    response = await post_compose(teacher, to="staff", action="send")
    assert response.status == 422 and "Nobody would receive this message" in await response.text()
    assert await written() == (0, 0, 0, 0)


async def test_pressing_send_twice_sends_once(people, signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)  # school-wide audiences
    teacher = await signed_in("t-rivera")
    preview = await (await post_compose(teacher, to="guardians")).text()
    submission = re.search(r'name="submission" value="([\w-]+)"', preview).group(1)
    first = await post_compose(teacher, to="guardians", action="send", submission=submission)
    second = await post_compose(teacher, to="guardians", action="send", submission=submission)
    assert first.status == second.status == 303
    assert second.headers["Location"] == first.headers["Location"]
    assert await Conversation.all().count() == 1 and await Message.all().count() == 1
    third = await post_compose(teacher, to="guardians", action="send", submission="another-fresh-form-key")
    assert third.status == 303 and await Message.all().count() == 2  # a new form is a new message


async def test_teachers_who_are_not_admins_write_to_their_classes_not_the_whole_school(people, signed_in):
    teacher = await signed_in("t-rivera")
    form = await (await teacher.get("/compose")).text()
    assert 'value="guardians"' not in form and 'value="section"' in form
    response = await post_compose(teacher, to="guardians")
    assert response.status == 422 and "Only school administrators" in await response.text()
    assert await Conversation.all().count() == 0
