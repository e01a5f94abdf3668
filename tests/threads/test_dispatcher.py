"""The outbox dispatcher against the real twilio client (→ fake Twilio REST API) and real SMTP
(→ aiosmtpd): what the providers receive, and what the outbox records."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from gateway.channels.base import ChannelKind, DeliveryStatus, OutboundItem, SendResult
from gateway.directory.models import ContactPoint, School
from gateway.threads.addresses import hash_token
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.dispatcher import Dispatcher
from gateway.threads.models import ConversationKind, Delivery, ReplyToken


async def send(school: School, secret: str, *, to: list[str], kind=ConversationKind.CONVERSATION, sender="t-rivera",
               body="Please sign the slip.", **kw) -> list[int]:
    result = await send_communication(
        school, sender_external_id=sender, kind=kind, recipients=RecipientSpec(users=to), subject="Field trip",
        body=body, secret_key=secret, **kw)
    return result.conversation_ids


async def make_due() -> None:
    """Jump past every backoff: what the clock would do."""
    await Delivery.filter(status=DeliveryStatus.QUEUED).update(next_attempt_at=datetime.now(timezone.utc) - timedelta(seconds=1))


async def test_sms_reaches_twilio_with_our_number_and_a_callback_carrying_the_delivery(
        people, twilio_settings, dispatcher, fake_twilio):
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    assert await dispatcher.drain() == 1
    [sent] = fake_twilio.sent
    delivery = await Delivery.get()
    assert sent.form["To"] == "+14155550142" and sent.form["From"] == delivery.sender
    assert sent.form["StatusCallback"] == f"https://gateway.test/webhooks/twilio/status?delivery={delivery.id}"
    assert "Please sign the slip." in sent.form["Body"]
    # Ana reads Spanish: the text we add is hers, the teacher's words are the teacher's.
    assert "Responda a este mensaje para contestar a Ms. Rivera." in sent.form["Body"]
    assert (delivery.status, delivery.provider_id, delivery.segments) == (DeliveryStatus.SENT, sent.sid, 1)
    assert delivery.claimed_by is None and delivery.attempts == 1


async def test_email_carries_reply_token_message_id_and_both_parts(people, twilio_settings, dispatcher, fake_smtp):
    await send(people, twilio_settings.secret_key, to=["g-john"])
    await dispatcher.drain()
    [received] = fake_smtp.received
    message = received.message
    delivery = await Delivery.get()
    assert received.rcpt_tos == ("john@family.example",)
    assert message["Message-ID"] == delivery.provider_id
    reply_to = message["Reply-To"]
    token = reply_to.split("+", 1)[1].split("@", 1)[0]
    assert reply_to == f"reply+{token}@reply.school.test"
    assert f"<t.{token}@reply.school.test>" in message["References"]
    stored = await ReplyToken.get(token_hash=hash_token(token))
    assert stored.user_id == delivery.recipient_id
    assert "Ms. Rivera" in message["From"] and message["Subject"] == "Field trip"
    assert message.get("Auto-Submitted") is None  # a person wrote it
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Please sign the slip." in text and "Reply to this e-mail to answer Ms. Rivera." in text
    assert "Please sign the slip." in html


async def test_newsletter_has_one_click_unsubscribe(people, twilio_settings, dispatcher, fake_smtp):
    await send(people, twilio_settings.secret_key, to=["g-john"], kind=ConversationKind.NEWSLETTER)
    await dispatcher.drain()
    message = fake_smtp.received[0].message
    assert message["List-Unsubscribe"].startswith("<https://gateway.test/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_hostile_body_is_escaped_in_html(people, twilio_settings, dispatcher, fake_smtp):
    await send(people, twilio_settings.secret_key, to=["g-john"], body="<script>alert(1)</script>")
    await dispatcher.drain()
    html = fake_smtp.received[0].message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


async def test_rate_limited_by_twilio_retries_later_then_succeeds(people, twilio_settings, dispatcher, fake_twilio):
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    fake_twilio.fail_next(429)
    before = datetime.now(timezone.utc)
    await dispatcher.drain()
    delivery = await Delivery.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == (DeliveryStatus.QUEUED, 1, "20429")
    # Backoff: 30 s base with jitter, between 15 and 30 s for the first retry.
    assert before + timedelta(seconds=14) < delivery.next_attempt_at < before + timedelta(seconds=31)
    assert fake_twilio.sent == []
    await make_due()
    await dispatcher.drain()
    delivery = await Delivery.get()
    assert delivery.status is DeliveryStatus.SENT and delivery.attempts == 2 and len(fake_twilio.sent) == 1


async def test_an_outage_loses_nothing_and_gives_up_only_after_max_attempts(people, twilio_settings, channels, fake_twilio):
    dispatcher = Dispatcher(replace(twilio_settings, max_attempts=3), channels)
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    fake_twilio.fail_next(500, times=10)
    for _ in range(3):
        await make_due()
        await dispatcher.drain()
    delivery = await Delivery.get()
    assert (delivery.status, delivery.attempts, delivery.error_code) == (DeliveryStatus.FAILED, 3, "20500")
    assert "gave up after 3 attempts" in delivery.error_reason


async def test_twilio_21610_marks_the_phone_opted_out_and_falls_back_to_email(
        people, twilio_settings, dispatcher, fake_twilio, fake_smtp):
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    fake_twilio.fail_next(400, code=21610, message="Attempt to send to unsubscribed recipient")
    await dispatcher.drain()
    sms, email = await Delivery.all().order_by("id")
    assert (sms.status, sms.error_code) == (DeliveryStatus.FAILED, "21610")
    phone = await ContactPoint.get(kind="phone", address="+14155550142")
    assert phone.opted_out_at is not None
    assert (email.channel, email.status) == ("email", DeliveryStatus.SENT)
    assert fake_smtp.received[0].rcpt_tos == ("ana@family.example",)


async def test_twilio_21211_marks_the_phone_unreachable(people, twilio_settings, dispatcher, fake_twilio):
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    fake_twilio.fail_next(400, code=21211, message="Invalid 'To' Phone Number")
    await dispatcher.drain()
    phone = await ContactPoint.get(kind="phone", address="+14155550142")
    assert phone.unreachable_reason and phone.problem == "unreachable"


async def test_smtp_4xx_retries_and_5xx_recipient_bounces_to_sms(people, twilio_settings, dispatcher, fake_smtp, fake_twilio):
    await send(people, twilio_settings.secret_key, to=["g-john"])
    fake_smtp.fail_next(451, "4.3.0 Try again later", stage="rcpt")
    await dispatcher.drain()
    delivery = await Delivery.get()
    assert (delivery.status, delivery.error_code) == (DeliveryStatus.QUEUED, "smtp-451")
    fake_smtp.fail_next(550, "5.1.1 User unknown", stage="rcpt")
    await make_due()
    await dispatcher.drain()
    email, sms = await Delivery.all().order_by("id")
    assert (email.status, email.error_code) == (DeliveryStatus.FAILED, "smtp-550")
    assert (await ContactPoint.get(kind="email", address="john@family.example")).bouncing_at is not None
    assert (sms.channel, sms.status) == ("sms", DeliveryStatus.SENT)
    assert fake_twilio.sent[0].form["To"] == "+14155550143"


async def test_quiet_hours_at_send_time_defer_without_spending_an_attempt(people, twilio_settings, dispatcher, fake_twilio):
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    people.timezone, people.quiet_hours_start, people.quiet_hours_end = "UTC", 0, 24 * 60 - 1
    await people.save()
    await dispatcher.drain()
    delivery = await Delivery.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.QUEUED, 0)
    assert delivery.next_attempt_at > datetime.now(timezone.utc) + timedelta(hours=1)
    assert fake_twilio.sent == []


class RecordingChannel:
    """Counts sends per delivery; optionally slow, to make workers overlap."""

    def __init__(self, kind: ChannelKind, delay: float = 0.0) -> None:
        self.kind, self.delay = kind, delay
        self.sent: Counter[str] = Counter()

    async def send(self, item: OutboundItem) -> SendResult:
        await asyncio.sleep(self.delay)
        self.sent[item.reference] += 1
        return SendResult(provider_id=f"X{item.reference}")

    async def close(self) -> None:
        pass


async def many_recipients(school: School, secret: str, n: int) -> None:
    from gateway.directory.user_input import UserIn
    from gateway.directory.users import upsert_users

    await upsert_users(school, [UserIn(external_id="t-1", role="staff", name="T")] + [
        UserIn(external_id=f"g-{i}", role="guardian", name=f"G{i}", email=f"g{i}@family.example") for i in range(n)])
    await send(school, secret, to=[f"g-{i}" for i in range(n)], sender="t-1", kind=ConversationKind.ANNOUNCEMENT)


async def test_two_dispatchers_share_the_work_and_send_each_delivery_exactly_once(school, settings):
    await many_recipients(school, settings.secret_key, 1000)
    email = RecordingChannel(ChannelKind.EMAIL, delay=0.001)
    workers = [Dispatcher(replace(settings, worker_batch_size=50), {"email": email}, worker_id=f"w{i}") for i in (1, 2)]
    totals = await asyncio.gather(*(w.drain() for w in workers))
    assert sum(totals) == 1000
    assert len(email.sent) == 1000 and set(email.sent.values()) == {1}
    assert await Delivery.filter(status=DeliveryStatus.SENT).count() == 1000
    if settings.database_url.startswith("postgres"):
        assert all(t > 0 for t in totals), totals  # SKIP LOCKED lets both make progress


async def test_a_dead_workers_leases_expire_and_another_finishes_without_resending(school, settings):
    await many_recipients(school, settings.secret_key, 30)
    email = RecordingChannel(ChannelKind.EMAIL)
    survivor = Dispatcher(replace(settings, worker_batch_size=10), {"email": email}, worker_id="survivor")
    # The first worker sends one batch, records it, then claims a second batch and dies with it.
    doomed = Dispatcher(replace(settings, worker_batch_size=10), {"email": email}, worker_id="doomed")
    assert await doomed.run_once() == 10
    held = await doomed.claim()
    assert held is not None and len(held.deliveries) == 10
    # The survivor takes what is free, but not what the dead worker holds.
    assert await survivor.drain() == 10
    assert await Delivery.filter(status=DeliveryStatus.QUEUED).count() == 10
    # Leases run out...
    await Delivery.filter(claimed_by=held.token).update(claimed_until=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert await survivor.drain() == 10
    assert len(email.sent) == 30 and set(email.sent.values()) == {1}
    # ...and nothing recorded as sent is ever claimed again, even with every lease expired.
    await Delivery.all().update(claimed_until=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert await survivor.drain() == 0
    assert set(email.sent.values()) == {1}


async def test_run_loop_sends_what_compose_queues_and_stops_cleanly(school, settings):
    email = RecordingChannel(ChannelKind.EMAIL)
    dispatcher = Dispatcher(replace(settings, worker_poll_seconds=0.05), {"email": email})
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    await many_recipients(school, settings.secret_key, 5)
    dispatcher.wake()
    for _ in range(200):
        if len(email.sent) == 5:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(email.sent) == 5
    assert await Delivery.filter(status=DeliveryStatus.SENT).count() == 5


async def test_an_address_that_went_bad_after_compose_falls_back_at_send_time(people, twilio_settings, dispatcher,
                                                                              fake_twilio, fake_smtp):
    await send(people, twilio_settings.secret_key, to=["g-ana"])
    await ContactPoint.filter(kind="phone").update(opted_out_at=datetime.now(timezone.utc))
    await dispatcher.drain()
    sms, email = await Delivery.all().order_by("id")
    assert (sms.status, sms.error_reason) == (DeliveryStatus.SUPPRESSED, "opted_out")
    assert (email.channel, email.status) == ("email", DeliveryStatus.SENT)
    assert fake_twilio.sent == [] and fake_smtp.received[0].rcpt_tos == ("ana@family.example",)
