"""Pages without sign-in: the dev mailbox, metrics, the newsletter view and one-click unsubscribe."""
from __future__ import annotations

from gateway.channels.dev import DevEmailChannel, DevSmsChannel
from gateway.directory.models import Membership, User
from gateway.settings import SmtpSettings
from gateway.threads.addresses import reply_token
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.dispatcher import Dispatcher
from gateway.threads.models import ConversationKind, Delivery, ReplyToken


async def send_and_dispatch(school, settings, kind=ConversationKind.CONVERSATION, to=("g-ana", "g-john"), body="Hello families"):
    result = await send_communication(school, sender_external_id="t-rivera", kind=kind,
                                      recipients=RecipientSpec(users=list(to)), subject="News", body=body,
                                      secret_key=settings.secret_key)
    await Dispatcher(settings, {"sms": DevSmsChannel(), "email": DevEmailChannel()}).drain()
    return result


async def token_of(settings, external_id: str) -> str:
    user_id = (await Membership.get(external_id=external_id)).user_id
    salt = (await ReplyToken.filter(user_id=user_id).first()).salt
    return reply_token(settings.secret_key, salt)


async def test_dev_mailbox_lists_what_the_dev_transports_sent(client, people, settings):
    await send_and_dispatch(people, settings)
    page = await (await client.get("/dev/mailbox")).text()
    assert "+14155550142" in page and "john@family.example" in page
    assert "reply+" in page and "@reply.school.test" in page
    sms_only = await (await client.get("/dev/mailbox?kind=sms")).text()
    assert "john@family.example" not in sms_only


async def test_dev_mailbox_escapes_what_it_shows(client, people, settings):
    await send_and_dispatch(people, settings, body="<img src=x onerror=alert(1)>")
    page = await (await client.get("/dev/mailbox")).text()
    assert "<img src=x" not in page and "&lt;img src=x" in page


async def test_dev_mailbox_is_absent_with_real_transports(make_client, people):
    client = await make_client(smtp=SmtpSettings("127.0.0.1", 2525), twilio=None)
    assert (await client.get("/dev/mailbox")).status == 200  # SMS is still a dev transport
    client = await make_client(environment="production")
    assert (await client.get("/dev/mailbox")).status == 404


async def test_metrics_count_outcomes_and_the_queue(client, people, settings):
    await send_communication(people, sender_external_id="t-rivera", kind=ConversationKind.CONVERSATION,
                             recipients=RecipientSpec(users=["g-john"]), subject="s", body="b", secret_key=settings.secret_key)
    text = await (await client.get("/metrics")).text()
    assert "gateway_outbox_queued 1.0" in text
    await Dispatcher(settings, {"sms": DevSmsChannel(), "email": DevEmailChannel()}).drain()
    text = await (await client.get("/metrics")).text()
    assert "gateway_outbox_queued 0.0" in text
    assert 'gateway_delivery_outcomes_total{channel="email",outcome="sent"}' in text


async def test_newsletter_link_opens_the_newsletter(client, people, settings):
    await send_and_dispatch(people, settings, kind=ConversationKind.NEWSLETTER, body="Bake sale on Friday!")
    sms = await Delivery.get(channel="sms")
    token = await token_of(settings, "g-ana")
    assert sms.recipient_id == (await Membership.get(external_id="g-ana")).user_id
    page = await client.get(f"/m/{token}")
    assert page.status == 200 and "Bake sale on Friday!" in await page.text()
    assert (await client.get("/m/" + "a" * 26)).status == 404
    assert (await client.get("/m/not-a-token")).status == 404


async def test_unsubscribe_asks_on_get_and_acts_on_post_in_the_readers_language(client, people, settings):
    await send_and_dispatch(people, settings, kind=ConversationKind.NEWSLETTER)
    token = await token_of(settings, "g-ana")
    ana = await Membership.get(external_id="g-ana").prefetch_related("user")
    page = await client.get(f"/unsubscribe/{token}")
    assert "Cancelar suscripción" in await page.text()  # Ana reads Spanish
    assert (await User.get(id=ana.user_id)).newsletters_unsubscribed_at is None  # link scanners change nothing
    response = await client.post(f"/unsubscribe/{token}")
    assert response.status == 200 and "Ya no recibirá boletines" in await response.text()
    assert (await User.get(id=ana.user_id)).newsletters_unsubscribed_at is not None
    result = await send_communication(people, sender_external_id="t-rivera", kind=ConversationKind.NEWSLETTER,
                                      recipients=RecipientSpec(users=["g-ana"]), subject="s", body="b",
                                      secret_key=settings.secret_key)
    assert result.suppressed == 1
    # Conversations still reach her.
    result = await send_communication(people, sender_external_id="t-rivera", kind=ConversationKind.CONVERSATION,
                                      recipients=RecipientSpec(users=["g-ana"]), subject="s", body="b",
                                      secret_key=settings.secret_key)
    assert result.deliveries == 1
