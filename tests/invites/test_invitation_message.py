"""The invitation and sign-in link messages, and the join link in every e-mail to someone not joined yet."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from gateway.channels.base import DeliveryStatus, OutboundEmail, OutboundSms
from gateway.channels.sms_segments import count_segments
from gateway.directory.models import ContactPoint, Membership, User
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.invites.outbox import link_url, queue_link_message
from gateway.invites.tokens import LoginToken, Purpose, check_token, issue_token
from gateway.settings import load_settings
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.models import ConversationKind, Delivery
from gateway.threads.render import LinkUnusable, OutboundContext, render

SETTINGS = load_settings({}, environment="test", public_url="https://gw.example", reply_domain="reply.example")
TOKEN = "abcdefghijklmnopqrstuvwxyz"
LINK = f"https://gw.example/join/{TOKEN}"
EXPIRES = datetime(2031, 3, 7, 15, 5, tzinfo=timezone.utc)
INVITE = OutboundContext(
    delivery_id=9, conversation_id=None, channel="email", to="ana@family.example", sms_sender="+14155550100",
    kind="invitation", subject="", body="", urgent=False, author_name=None, school_name="Lincoln Elementary",
    locale="en", reply_token=None, reply_domain="reply.example", link=LINK, link_expires_at=EXPIRES,
    recipient_name="Ana García", school_timezone="America/Los_Angeles",
)
JOIN = re.compile(r"https://gateway\.test/join/([a-z2-7]{26})")


def email(**changes) -> OutboundEmail:
    item = render(replace(INVITE, **changes), SETTINGS)
    assert isinstance(item, OutboundEmail)
    return item


def sms(**changes) -> OutboundSms:
    item = render(replace(INVITE, channel="sms", to="+14155550142", **changes), SETTINGS)
    assert isinstance(item, OutboundSms)
    return item


# ------------------------------------------------------------------------ rendering


def test_the_invitation_email_has_the_link_in_both_parts_and_says_until_when():
    item = email()
    assert item.subject == "Set up your Lincoln Elementary account"
    assert ("Auto-Submitted", "auto-generated") in item.headers
    assert item.reply_to is None and item.references == ()
    assert item.from_ == "Lincoln Elementary <school@reply.localhost>"
    assert item.message_id.startswith("<d9.")
    assert item.text.startswith("Hello Ana García,\n\nLincoln Elementary invites you to set up your account.")
    assert f"Set up your account: {LINK}" in item.text
    assert "The link works until March 7, 2031." in item.text  # in the school's time zone
    assert item.html.count(f'href="{LINK}"') == 2 and 'lang="en"' in item.html


def test_the_invitation_email_in_spanish():
    item = email(locale="es")
    assert item.subject == "Cree su cuenta de Lincoln Elementary"
    assert "Hola, Ana García:" in item.text and f"Cree su cuenta: {LINK}" in item.text
    assert "El enlace funciona hasta el 7 de marzo de 2031." in item.text
    assert 'lang="es"' in item.html and "Crear su cuenta" in item.html


def test_a_hostile_name_is_escaped_in_the_html():
    item = email(recipient_name="<script>x</script>", school_name="A & B <School>")
    assert "<script>" not in item.html and "&lt;script&gt;" in item.html and "A &amp; B &lt;School&gt;" in item.html


@pytest.mark.parametrize("locale", ["en", "es"])
def test_the_invitation_sms_is_one_gsm_segment_in_english_and_spanish(locale):
    item = sms(locale=locale)
    count = count_segments(item.body)
    assert (count.encoding, count.segments) == ("GSM-7", 1), item.body
    assert LINK in item.body and item.status_callback == "https://gw.example/webhooks/twilio/status?delivery=9"
    assert item.body.splitlines()[-1] == {"en": "Reply STOP to opt out.", "es": "Responda STOP para no recibir mensajes."}[locale]


def test_a_long_school_name_is_shortened_to_keep_one_segment():
    name = "Abraham Lincoln Elementary and Middle School of the Greater Springfield Unified District"
    item = sms(school_name=name)
    assert count_segments(item.body).segments == 1
    assert "..." in item.body and LINK in item.body and item.body.startswith("Abraham Lincoln")


def test_a_school_name_outside_gsm7_costs_more_segments_rather_than_a_garbled_name():
    # "í" is not in GSM-7: the whole text becomes UCS-2 (67 a part once split), and the link alone
    # is 51, so one segment is out of reach; the name is not cut (that would only drop the "í").
    item = sms(school_name="Escuela José Martí", locale="es")
    count = count_segments(item.body)
    assert (count.encoding, count.segments) == ("UCS-2", 3)
    assert item.body.startswith("Escuela José Martí le invita a crear su cuenta: " + LINK)
    english = sms(school_name="Escuela José Martí")
    assert count_segments(english.body).segments == 2 and english.body.endswith("Reply STOP to opt out.")
    # é alone is in GSM-7: one segment.
    assert count_segments(sms(school_name="Escuela José Marti", locale="es").body).segments == 1


def test_the_sign_in_link_in_both_channels_says_how_long_it_works():
    soon = datetime.now(timezone.utc) + timedelta(minutes=15)
    login = replace(INVITE, kind="login_link", link="https://gw.example/login/" + TOKEN, link_expires_at=soon)
    mail = render(login, SETTINGS)
    assert mail.subject == "Your Lincoln Elementary sign-in link"
    assert "It works once, for 15 minutes." in mail.text and "https://gw.example/login/" + TOKEN in mail.text
    text = render(replace(login, channel="sms", locale="es"), SETTINGS)
    assert text.body == (f"Su enlace para entrar en Lincoln Elementary: https://gw.example/login/{TOKEN}\n"
                         "Sirve una sola vez, durante 15 minutos.")
    assert count_segments(text.body).segments == 1
    one = render(replace(login, link_expires_at=datetime.now(timezone.utc) + timedelta(seconds=30)), SETTINGS)
    assert "It works once, for 1 minute." in one.text


def test_an_unusable_link_is_never_rendered():
    with pytest.raises(LinkUnusable):
        render(replace(INVITE, link=None, link_problem="expired"), SETTINGS)


def test_the_join_line_in_a_conversation_email():
    base = replace(INVITE, kind="conversation", conversation_id=3, subject="Trip", body="Hi", author_name="Ms. Rivera",
                   reply_token=TOKEN, link=None)
    item = render(replace(base, join_link=LINK), SETTINGS)
    assert f"Set up your account: {LINK}" in item.text and f'<a href="{LINK}"' in item.html
    assert "Cree su cuenta: " + LINK in render(replace(base, join_link=LINK, locale="es"), SETTINGS).text
    plain = render(base, SETTINGS)
    assert "Set up your account" not in plain.text and "/join/" not in plain.html


# ------------------------------------------------------------------------ the join line, end to end


async def uid(external_id: str) -> int:
    return (await Membership.get(external_id=external_id)).user_id


async def send(school, settings, to: list[str]) -> None:
    await send_communication(school, sender_external_id="t-rivera", kind=ConversationKind.ANNOUNCEMENT,
                             recipients=RecipientSpec(users=to), subject="Field trip", body="Please sign the slip.",
                             secret_key=settings.secret_key)


def text_of(received) -> str:
    return received.message.get_body(("plain",)).get_content()


async def test_an_email_to_an_unjoined_guardian_carries_a_join_link_and_not_to_a_joined_one(
        people, twilio_settings, dispatcher, fake_smtp):
    await User.filter(id=await uid("g-wei")).update(joined_at=datetime.now(timezone.utc))
    await send(people, twilio_settings, ["g-john", "g-wei"])
    await dispatcher.drain()
    by_rcpt = {r.rcpt_tos[0]: r for r in fake_smtp.received}
    john = text_of(by_rcpt["john@family.example"])
    token = JOIN.search(john).group(1)
    assert f"Set up your account: https://gateway.test/join/{token}" in john
    assert f'href="https://gateway.test/join/{token}"' in by_rcpt["john@family.example"].message.get_body(
        ("html",)).get_content()
    check = await check_token(token, (Purpose.FIRST_LOGIN,))
    assert check.ok and check.token.user_id == await uid("g-john")
    wei = by_rcpt["wei@family.example"]
    assert "/join/" not in text_of(wei) and "/join/" not in wei.message.get_body(("html",)).get_content()
    # Wei prefers both channels: the SMS never carries a join link (it would cost a segment).


async def test_the_join_link_is_reused_across_emails_and_one_token_serves_a_batch(
        people, twilio_settings, dispatcher, fake_smtp):
    await send(people, twilio_settings, ["g-john"])
    await send(people, twilio_settings, ["g-john", "t-chen"])
    await dispatcher.drain()
    tokens = [JOIN.search(text_of(r)).group(1) for r in fake_smtp.received if r.rcpt_tos == ("john@family.example",)]
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert await LoginToken.filter(user_id=await uid("g-john")).count() == 1
    assert await LoginToken.filter(user_id=await uid("t-chen")).count() == 1  # staff too


async def test_no_join_link_for_a_student_whose_login_is_not_enabled(people, twilio_settings, dispatcher, fake_smtp):
    await upsert_users(people, [
        UserIn(external_id="s-lucia", role="student", name="Lucía", email="lucia@students.example"),
        UserIn(external_id="s-tom", role="student", name="Tom", email="tom@students.example", login_enabled=True),
    ])
    await send(people, twilio_settings, ["s-lucia", "s-tom"])
    await dispatcher.drain()
    by_rcpt = {r.rcpt_tos[0]: text_of(r) for r in fake_smtp.received}
    assert "/join/" not in by_rcpt["lucia@students.example"]
    assert JOIN.search(by_rcpt["tom@students.example"])
    assert await LoginToken.filter(user_id=await uid("s-lucia")).count() == 0


# ------------------------------------------------------------------------ queue_link_message


async def test_queue_link_message_sends_a_sign_in_link_by_email_at_once(people, twilio_settings, dispatcher, fake_smtp):
    people.timezone, people.quiet_hours_start, people.quiet_hours_end = "UTC", 0, 24 * 60 - 1
    await people.save()
    john = await uid("g-john")
    row, token = await issue_token(john, Purpose.LOGIN, twilio_settings.secret_key)
    delivery = await queue_link_message(john, people.id, Purpose.LOGIN, row, secret_key=twilio_settings.secret_key)
    assert delivery is not None and (delivery.channel, delivery.address) == ("email", "john@family.example")
    assert await dispatcher.drain() == 1
    [received] = fake_smtp.received
    assert link_url("https://gateway.test", Purpose.LOGIN, token) in text_of(received)
    assert received.message["Subject"] == "Your Lincoln Elementary sign-in link"


async def test_queue_link_message_by_sms_even_in_quiet_hours(people, twilio_settings, dispatcher, fake_twilio):
    people.timezone, people.quiet_hours_start, people.quiet_hours_end = "UTC", 0, 24 * 60 - 1
    await people.save()
    ana = await uid("g-ana")
    row, token = await issue_token(ana, Purpose.FIRST_LOGIN, twilio_settings.secret_key)
    delivery = await queue_link_message(ana, people.id, Purpose.FIRST_LOGIN, row, channel="sms",
                                        secret_key=twilio_settings.secret_key)
    assert delivery is not None and delivery.sender in people.sms_numbers
    await dispatcher.drain()
    [sent] = fake_twilio.sent
    assert sent.form["To"] == "+14155550142"
    assert sent.form["Body"].startswith(f"Lincoln Elementary le invita a crear su cuenta: https://gateway.test/join/{token}")
    assert (await Delivery.get(id=delivery.id)).status is DeliveryStatus.SENT


async def test_queue_link_message_without_a_usable_contact_point_returns_none(people, twilio_settings):
    lucia = await uid("s-lucia")
    row, _ = await issue_token(lucia, Purpose.FIRST_LOGIN, twilio_settings.secret_key)
    assert await queue_link_message(lucia, people.id, Purpose.FIRST_LOGIN, row,
                                    secret_key=twilio_settings.secret_key) is None
    john = await uid("g-john")
    row, _ = await issue_token(john, Purpose.LOGIN, twilio_settings.secret_key)
    await ContactPoint.filter(user_id=john, kind="phone").update(opted_out_at=datetime.now(timezone.utc))
    assert await queue_link_message(john, people.id, Purpose.LOGIN, row, channel="sms",
                                    secret_key=twilio_settings.secret_key) is None
    assert await Delivery.all().count() == 0


async def test_queue_link_message_refuses_a_token_that_does_not_match(people, twilio_settings):
    john, ana = await uid("g-john"), await uid("g-ana")
    row, _ = await issue_token(john, Purpose.LOGIN, twilio_settings.secret_key)
    with pytest.raises(ValueError):
        await queue_link_message(ana, people.id, Purpose.LOGIN, row, secret_key=twilio_settings.secret_key)
    with pytest.raises(ValueError):
        await queue_link_message(john, people.id, Purpose.FIRST_LOGIN, row, secret_key=twilio_settings.secret_key)
    with pytest.raises(ValueError):
        await queue_link_message(john, people.id, Purpose.LOGIN, row, secret_key="another-key")
    with pytest.raises(ValueError):
        await queue_link_message(john, people.id, Purpose.LOGIN, row, channel="fax", secret_key=twilio_settings.secret_key)
