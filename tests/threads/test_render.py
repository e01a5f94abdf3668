"""What one delivery looks like on the wire, in the recipient's language."""
from __future__ import annotations

from dataclasses import replace

from gateway.channels.base import OutboundEmail, OutboundSms
from gateway.channels.sms_segments import count_segments
from gateway.settings import load_settings
from gateway.threads.render import OutboundContext, render

SETTINGS = load_settings({}, environment="test", public_url="https://gw.example", reply_domain="reply.example")
TOKEN = "abcdefghijklmnopqrstuvwxyz"
BASE = OutboundContext(
    delivery_id=7, conversation_id=3, channel="email", to="ana@family.example", sms_sender="+14155550100",
    kind="conversation", subject="Field trip", body="Please sign the slip.\n<b>Thanks</b>", urgent=False,
    author_name="Ms. Rivera", school_name="Lincoln Elementary", locale="en", reply_token=TOKEN,
    reply_domain="reply.example",
)


def email(**changes) -> OutboundEmail:
    item = render(replace(BASE, **changes), SETTINGS)
    assert isinstance(item, OutboundEmail)
    return item


def sms(**changes) -> OutboundSms:
    item = render(replace(BASE, channel="sms", to="+14155550142", **changes), SETTINGS)
    assert isinstance(item, OutboundSms)
    return item


def test_a_teachers_email_has_a_reply_address_and_the_token_in_references():
    item = email()
    assert item.reply_to == f"reply+{TOKEN}@reply.example"
    assert item.references == (f"<t.{TOKEN}@reply.example>",)
    assert item.message_id.startswith("<d7.") and item.message_id.endswith("@reply.example>")
    assert item.message_id == email().message_id  # the same on every attempt
    assert ("Auto-Submitted", "auto-generated") not in item.headers
    assert "Reply to this e-mail to answer Ms. Rivera." in item.text
    assert "&lt;b&gt;Thanks&lt;/b&gt;" in item.html and "<b>Thanks</b>" not in item.html


def test_system_mail_is_marked_auto_submitted():
    assert ("Auto-Submitted", "auto-generated") in email(author_name=None).headers


def test_the_added_text_follows_the_recipients_language():
    item = email(locale="es", urgent=True)
    assert item.subject == "[Urgente] Field trip"
    assert "Responda a este correo para contestar a Ms. Rivera." in item.text
    assert 'lang="es"' in item.html
    assert "Please sign the slip." in item.text  # the teacher's own words are never translated


def test_newsletters_offer_one_click_unsubscribe():
    headers = dict(email(kind="newsletter").headers)
    assert headers["List-Unsubscribe"] == (f"<https://gw.example/unsubscribe/{TOKEN}>, "
                                           f"<mailto:reply+{TOKEN}@reply.example?subject=unsubscribe>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_conversation_sms_fits_one_segment_and_says_how_to_answer():
    item = sms()
    assert item.from_ == "+14155550100"
    assert item.status_callback == "https://gw.example/webhooks/twilio/status?delivery=7"
    assert item.body == "Please sign the slip.\n<b>Thanks</b>\n- Ms. Rivera, Lincoln Elementary\n" \
                        "Reply to this message to answer Ms. Rivera."
    assert count_segments(item.body).segments == 1


def test_announcements_by_sms_say_how_to_opt_out():
    assert sms(kind="announcement").body.endswith("Text STOP to opt out.")
    assert sms(kind="announcement", locale="es").body.endswith("Envíe STOP para no recibir más mensajes.")


def test_a_newsletter_by_sms_is_a_short_link():
    item = sms(kind="newsletter", short_link=True)
    assert "Please sign the slip." not in item.body
    assert f"https://gw.example/m/{TOKEN}" in item.body and item.body.startswith("Lincoln Elementary newsletter:")
