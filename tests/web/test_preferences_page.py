"""/preferences: how the school reaches me, my language, newsletters, and the state of my own addresses."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.directory.models import (
    AuditLog,
    ChannelPreference,
    ContactKind,
    ContactPoint,
    Membership,
    User,
)
from gateway.threads.models import Conversation, SmsRoute
from tests.web.conftest import csrf_of

ANA_PHONE, ANA_EMAIL = "+14155550142", "ana@family.example"
JOHN_PHONE, JOHN_EMAIL = "+14155550143", "john@family.example"


async def user_of(external_id: str) -> User:
    return await User.get(id=(await Membership.get(external_id=external_id)).user_id)


async def contact(external_id: str, kind: ContactKind) -> ContactPoint:
    return await ContactPoint.get(user_id=(await user_of(external_id)).id, kind=kind)


async def save(client, **fields: str):
    token = await csrf_of(client, "/preferences")
    return await client.post("/preferences", data={"csrf_token": token, **fields}, allow_redirects=False)


async def test_the_page_shows_my_choices_and_my_own_addresses_working(people, signed_in):
    john = await signed_in("g-john")
    html = await (await john.get("/preferences")).text()
    assert 'lang="en"' in html
    assert 'value="email" checked' in html and 'value="receive" checked' in html
    assert "Text message" in html and "E-mail" in html and "Both" in html
    assert '<option value="es" lang="es">Español</option>' in html  # each language named in itself
    assert JOHN_PHONE in html and JOHN_EMAIL in html and html.count("Working") == 2
    assert 'href="/password"' in html and "Change password" in html
    assert "/retry" not in html


async def test_changing_channel_language_and_newsletters_saves_audits_and_speaks_the_new_language(
        people, signed_in):
    john = await signed_in("g-john")
    response = await save(john, channel="both", locale="es", newsletters="unsubscribed")
    assert response.status == 303 and response.headers["Location"] == "/preferences?saved=1"
    user = await user_of("g-john")
    assert user.channel_preference is ChannelPreference.BOTH and user.locale == "es"
    assert user.newsletters_unsubscribed_at is not None
    [entry] = await AuditLog.filter(action="preferences.changed")
    assert entry.actor == f"user:{user.id}" and entry.school_id == people.id
    assert entry.details == {"channel": {"from": "email", "to": "both"}, "locale": {"from": "en", "to": "es"},
                             "newsletters": {"from": "receive", "to": "unsubscribed"}}
    assert JOHN_EMAIL not in str(entry.details) and JOHN_PHONE not in str(entry.details)

    html = await (await john.get("/preferences?saved=1")).text()
    assert 'lang="es"' in html and "Idioma" in html and "Guardar" in html  # the page follows the new locale
    assert 'role="status"' in html
    assert 'value="both" checked' in html and 'value="unsubscribed" checked' in html
    assert '<option value="es" lang="es" selected>' in html

    response = await save(john, channel="both", locale="es", newsletters="receive")
    assert response.status == 303
    assert (await user_of("g-john")).newsletters_unsubscribed_at is None
    latest = await AuditLog.filter(action="preferences.changed").order_by("-id").first()
    assert latest.details == {"newsletters": {"from": "unsubscribed", "to": "receive"}}


async def test_saving_without_changes_writes_no_audit_row(people, signed_in):
    john = await signed_in("g-john")
    response = await save(john, channel="email", locale="en", newsletters="receive")
    assert response.status == 303
    assert not await AuditLog.filter(action="preferences.changed").exists()
    assert (await user_of("g-john")).locale is None  # still follows the browser / school default


async def test_unknown_values_are_refused_and_nothing_is_written(people, signed_in):
    john = await signed_in("g-john")
    before = await user_of("g-john")
    for fields in ({"channel": "fax", "locale": "es", "newsletters": "receive"},
                   {"channel": "both", "locale": "xx", "newsletters": "receive"},
                   {"channel": "both", "locale": "es", "newsletters": "maybe"},
                   {"locale": "es", "newsletters": "receive"}):
        response = await save(john, **fields)
        assert response.status == 422, fields
        html = await response.text()
        assert 'role="alert"' in html and 'aria-invalid="true"' in html
    after = await user_of("g-john")
    assert (after.channel_preference, after.locale, after.newsletters_unsubscribed_at) == (
        before.channel_preference, before.locale, before.newsletters_unsubscribed_at)
    assert not await AuditLog.filter(action="preferences.changed").exists()


async def test_text_messages_need_a_phone_that_can_receive_them(people, signed_in):
    await ContactPoint.filter(user_id=(await user_of("g-john")).id, kind=ContactKind.PHONE).delete()
    john = await signed_in("g-john")
    for channel in ("sms", "both"):
        response = await save(john, channel=channel, locale="en", newsletters="receive")
        assert response.status == 422
        html = await response.text()
        assert "no phone number" in html and 'role="alert"' in html
        assert f'value="{channel}" checked' in html  # what was chosen stays chosen
    assert (await user_of("g-john")).channel_preference is ChannelPreference.EMAIL
    assert not await AuditLog.filter(action="preferences.changed").exists()


async def test_e_mail_needs_an_address_that_works(people, signed_in):
    await ContactPoint.filter(user_id=(await user_of("g-wei")).id, kind=ContactKind.EMAIL).update(
        unreachable_reason="mailbox does not exist")
    wei = await signed_in("g-wei")
    await User.filter(id=(await user_of("g-wei")).id).update(channel_preference=ChannelPreference.SMS)
    response = await save(wei, channel="email", locale="en", newsletters="receive")
    assert response.status == 422 and "no e-mail address that works" in await response.text()
    assert (await user_of("g-wei")).channel_preference is ChannelPreference.SMS


async def test_an_opted_out_phone_is_told_to_text_start_to_the_number_that_texted_it(people, signed_in):
    ana_user = await user_of("g-ana")
    await ContactPoint.filter(user_id=ana_user.id, kind=ContactKind.PHONE).update(
        opted_out_at=datetime.now(timezone.utc))
    ana = await signed_in("g-ana")  # signs in with her e-mail address (the first contact point)
    html = await (await ana.get("/preferences")).text()
    assert "START" in html and "+14155550100" in html  # no route yet: the school's first number
    assert "/retry" not in html and "opted_out_at" not in html  # no web button lifts a carrier opt-out

    conversation = await Conversation.create(school=people, kind="conversation", subject="Trip")
    now = datetime.now(timezone.utc)
    await SmsRoute.create(school=people, phone=ANA_PHONE, our_number="+14155550100", conversation=conversation,
                          user=ana_user, last_used_at=now - timedelta(days=3))
    await SmsRoute.create(school=people, phone=ANA_PHONE, our_number="+14155550101", conversation=conversation,
                          user=ana_user, last_used_at=now - timedelta(hours=1))
    html = await (await ana.get("/preferences")).text()
    assert "START" in html and "+14155550101" in html and "+14155550100" not in html


async def test_an_opted_out_phone_cannot_be_chosen_but_other_changes_still_save(people, signed_in):
    await ContactPoint.filter(user_id=(await user_of("g-john")).id, kind=ContactKind.PHONE).update(
        opted_out_at=datetime.now(timezone.utc))
    john = await signed_in("g-john")
    response = await save(john, channel="sms", locale="en", newsletters="receive")
    assert response.status == 422 and "START" in await response.text()
    # Ana prefers SMS and her phone is opted out: she can still change her language.
    await ContactPoint.filter(user_id=(await user_of("g-ana")).id, kind=ContactKind.PHONE).update(
        opted_out_at=datetime.now(timezone.utc))
    ana = await signed_in("g-ana")
    response = await save(ana, channel="sms", locale="en", newsletters="receive")
    assert response.status == 303
    assert (await user_of("g-ana")).locale == "en"


async def test_a_bouncing_address_can_be_tried_again(people, signed_in):
    email = await contact("g-john", ContactKind.EMAIL)
    await ContactPoint.filter(id=email.id).update(bouncing_at=datetime.now(timezone.utc))
    john = await signed_in("g-john")
    html = await (await john.get("/preferences")).text()
    assert "bounced" in html and f'action="/preferences/contacts/{email.id}/retry"' in html
    assert "Try this address again" in html
    token = await csrf_of(john, "/preferences")
    response = await john.post(f"/preferences/contacts/{email.id}/retry", data={"csrf_token": token},
                               allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/preferences?retried=1")
    assert (await ContactPoint.get(id=email.id)).bouncing_at is None
    [entry] = await AuditLog.filter(action="contact.retry")
    assert entry.actor == f"user:{email.user_id}" and entry.target == f"contact:{email.id}"
    assert JOHN_EMAIL not in str(entry.details)
    html = await (await john.get(response.headers["Location"])).text()
    assert 'role="status"' in html and "/retry" not in html and html.count("Working") == 2


async def test_nobody_retries_someone_elses_address(people, signed_in):
    ana_email = await contact("g-ana", ContactKind.EMAIL)
    bounced = datetime.now(timezone.utc)
    await ContactPoint.filter(id=ana_email.id).update(bouncing_at=bounced)
    john = await signed_in("g-john")
    token = await csrf_of(john, "/preferences")
    for point_id in (ana_email.id, 999999):
        response = await john.post(f"/preferences/contacts/{point_id}/retry", data={"csrf_token": token})
        assert response.status == 404
    assert (await ContactPoint.get(id=ana_email.id)).bouncing_at is not None
    assert not await AuditLog.filter(action="contact.retry").exists()


async def test_posts_without_csrf_change_nothing(people, signed_in):
    email = await contact("g-john", ContactKind.EMAIL)
    await ContactPoint.filter(id=email.id).update(bouncing_at=datetime.now(timezone.utc))
    john = await signed_in("g-john")
    response = await john.post("/preferences", data={"channel": "both", "locale": "es", "newsletters": "receive"})
    assert response.status == 403
    response = await john.post(f"/preferences/contacts/{email.id}/retry", data={"csrf_token": "0" * 64})
    assert response.status == 403
    user = await user_of("g-john")
    assert user.channel_preference is ChannelPreference.EMAIL and user.locale is None
    assert (await ContactPoint.get(id=email.id)).bouncing_at is not None
    assert not await AuditLog.all().filter(action__in=["preferences.changed", "contact.retry"]).exists()


async def test_nobody_sees_another_familys_addresses(people, signed_in):
    for who in ("g-john", "g-wei", "t-rivera"):
        html = await (await (await signed_in(who)).get("/preferences")).text()
        assert ANA_PHONE not in html and ANA_EMAIL not in html, who
    ana_html = await (await (await signed_in("g-ana")).get("/preferences")).text()
    assert ANA_PHONE in ana_html and ANA_EMAIL in ana_html
    assert JOHN_PHONE not in ana_html and JOHN_EMAIL not in ana_html


async def test_staff_have_preferences_too_and_visitors_must_sign_in(people, signed_in, make_client):
    teacher = await signed_in("t-rivera")
    html = await (await teacher.get("/preferences")).text()
    assert "rivera@school.example" in html
    response = await save(teacher, channel="email", locale="es", newsletters="unsubscribed")
    assert response.status == 303 and (await user_of("t-rivera")).locale == "es"
    anonymous = await make_client()
    response = await anonymous.get("/preferences", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/preferences"
