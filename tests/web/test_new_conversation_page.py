"""/conversations/new: a guardian or student writes to one of their (children's) teachers."""
from __future__ import annotations

from gateway.directory.models import ContactPoint, Membership, SectionMember, User
from gateway.threads.models import (
    Conversation,
    ConversationKind,
    Delivery,
    Direction,
    Message,
    Origin,
    Participant,
    RoutedBy,
)
from tests.web.conftest import csrf_of

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def user_id(external_id: str) -> int:
    return (await Membership.get(external_id=external_id)).user_id


async def write(client, **fields: str):
    token = await csrf_of(client, "/conversations/new")
    return await client.post("/conversations/new", data={"csrf_token": token, **fields}, allow_redirects=False)


async def counts() -> tuple[int, int, int, int]:
    return (await Conversation.all().count(), await Message.all().count(), await Participant.all().count(),
            await Delivery.all().count())


async def test_a_guardian_sees_only_her_childs_teachers(people, signed_in):
    ana = await signed_in("g-ana")
    response = await ana.get("/conversations/new")
    assert response.status == 200
    html = await response.text()
    rivera = await user_id("t-rivera")
    assert f'<option value="{people.id}:{rivera}" selected>Ms. Rivera (Lucía)</option>' in html  # the only one
    assert "Mr. Chen" not in html
    assert 'name="csrf_token"' in html and '<label for="subject">' in html and '<label for="body">' in html


async def test_a_guardian_of_a_child_in_two_classes_sees_both_teachers(people, signed_in):
    html = await (await (await signed_in("g-john")).get("/conversations/new")).text()
    assert "Mr. Chen (Tom)" in html and "Ms. Rivera (Tom)" in html
    assert html.index("Mr. Chen") < html.index("Ms. Rivera")  # by name


async def test_writing_starts_a_private_conversation_and_tells_the_teacher(people, signed_in):
    ana = await signed_in("g-ana")
    ana_id, rivera = await user_id("g-ana"), await user_id("t-rivera")
    response = await write(ana, teacher=f"{people.id}:{rivera}", subject="  Lucía's   homework ",
                           body="¿Puede enviarme la tarea de hoy?")
    assert response.status == 303
    conversation = await Conversation.get(school_id=people.id)
    assert response.headers["Location"] == f"/conversations/{conversation.id}?sent=1"
    assert conversation.kind is ConversationKind.CONVERSATION and conversation.created_by_id == ana_id
    assert conversation.subject == "Lucía's homework"
    participants = {p.user_id: p for p in await Participant.filter(conversation=conversation)}
    assert set(participants) == {ana_id, rivera}
    assert participants[rivera].is_owner and participants[rivera].role == "staff"
    assert not participants[ana_id].is_owner and participants[ana_id].role == "guardian"
    [message] = await Message.filter(conversation=conversation)
    assert (message.author_id, message.body, message.origin, message.routed_by, message.direction) == (
        ana_id, "¿Puede enviarme la tarea de hoy?", Origin.WEB, RoutedBy.WEB, Direction.INBOUND)
    deliveries = await Delivery.filter(message=message)
    assert [d.recipient_id for d in deliveries] == [rivera]  # the teacher is told; Ana wrote it herself
    page = await ana.get(response.headers["Location"])
    html = await page.text()
    assert page.status == 200 and "¿Puede enviarme la tarea de hoy?" in html and 'role="status"' in html
    teacher_html = await (await (await signed_in("t-rivera")).get(f"/conversations/{conversation.id}")).text()
    assert "¿Puede enviarme la tarea de hoy?" in teacher_html


async def test_a_teacher_who_is_not_the_familys_is_not_found_and_nothing_is_written(people, signed_in):
    ana = await signed_in("g-ana")
    chen, rivera = await user_id("t-chen"), await user_id("t-rivera")
    before = await counts()
    for forged in (f"{people.id}:{chen}", f"{people.id + 1}:{rivera}", f"{people.id}:{await user_id('g-john')}",
                   "nonsense", f"{people.id}:"):
        response = await write(ana, teacher=forged, subject="Hello", body="Hi")
        assert response.status == 404, forged
    assert await counts() == before


async def test_staff_only_people_cannot_use_it(people, signed_in):
    teacher = await signed_in("t-rivera")
    assert (await teacher.get("/conversations/new")).status == 403
    token = await csrf_of(teacher, "/conversations")
    response = await teacher.post("/conversations/new", data={
        "csrf_token": token, "teacher": f"{people.id}:{await user_id('t-chen')}", "subject": "Hi", "body": "Hi"})
    assert response.status == 403
    assert await Conversation.all().count() == 0


async def test_missing_or_too_long_fields_are_shown_on_the_form_and_nothing_is_written(people, signed_in):
    ana = await signed_in("g-ana", max_body_chars=50)
    rivera = f"{people.id}:{await user_id('t-rivera')}"
    before = await counts()
    response = await write(ana, teacher=rivera, subject="Kept subject", body="   ")
    assert response.status == 422
    html = await response.text()
    assert 'role="alert"' in html and 'value="Kept subject"' in html and 'aria-invalid="true"' in html
    response = await write(ana, teacher=rivera, subject="", body="Kept body")
    assert response.status == 422 and ">Kept body</textarea>" in await response.text()
    response = await write(ana, teacher="", subject="Hello", body="Hi")
    assert response.status == 422
    response = await write(ana, teacher=rivera, subject="x" * 201, body="Hi")
    assert response.status == 422
    response = await write(ana, teacher=rivera, subject="Hello", body="x" * 51)
    html = await response.text()
    assert response.status == 422 and 'id="body-error"' in html and 'lang="es"' in html  # Ana reads Spanish
    assert await counts() == before


async def test_without_csrf_nothing_is_written(people, signed_in):
    ana = await signed_in("g-ana")
    response = await ana.post("/conversations/new", data={
        "teacher": f"{people.id}:{await user_id('t-rivera')}", "subject": "Hello", "body": "Hi"})
    assert response.status == 403
    assert await Conversation.all().count() == 0


async def test_hostile_text_is_escaped_on_the_thread_page(people, signed_in):
    ana = await signed_in("g-ana")
    response = await write(ana, teacher=f"{people.id}:{await user_id('t-rivera')}", subject=HOSTILE, body=HOSTILE)
    assert response.status == 303
    for client in (ana, await signed_in("t-rivera")):
        html = await (await client.get(response.headers["Location"].split("?")[0])).text()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html
    # and on the form itself when it comes back with an error
    response = await write(ana, teacher=f"{people.id}:{await user_id('t-rivera')}", subject=HOSTILE, body="")
    html = await response.text()
    assert response.status == 422 and "<script>alert" not in html and "&lt;script&gt;" in html


async def test_a_family_without_teachers_gets_an_explanation_and_no_form(people, signed_in):
    await SectionMember.filter(user_id=await user_id("s-lucia")).delete()
    ana = await signed_in("g-ana")
    response = await ana.get("/conversations/new")
    html = await response.text()
    assert response.status == 200
    assert 'action="/conversations/new"' not in html and 'name="body"' not in html
    assert '<p class="card">' in html


async def test_a_student_writes_to_their_own_teacher(people, signed_in):
    lucia = await user_id("s-lucia")
    await User.filter(id=lucia).update(login_enabled=True)
    await ContactPoint.create(user_id=lucia, kind="email", address="lucia@student.example")
    student = await signed_in("s-lucia")
    rivera = await user_id("t-rivera")
    html = await (await student.get("/conversations/new")).text()
    assert f'<option value="{people.id}:{rivera}" selected>Ms. Rivera</option>' in html
    response = await write(student, teacher=f"{people.id}:{rivera}", subject="Question", body="When is the test?")
    assert response.status == 303
    conversation = await Conversation.get(created_by_id=lucia)
    roles = {p.user_id: p.role for p in await Participant.filter(conversation=conversation)}
    assert roles == {lucia: "student", rivera: "staff"}


async def test_the_same_form_posted_twice_starts_one_conversation(people, signed_in):
    ana = await signed_in("g-ana")
    rivera = await user_id("t-rivera")
    fields = {"teacher": f"{people.id}:{rivera}", "subject": "Homework", "body": "Hola", "submission": "k" * 22}
    first, second = await write(ana, **fields), await write(ana, **fields)
    assert first.headers["Location"] == second.headers["Location"]
    assert await counts() == (1, 1, 2, 1)
