"""Someone answers an invitation (a delivery with no conversation): routing must not trip over it."""
from __future__ import annotations

import pytest

from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.invites.campaigns import create_campaign, run_campaign
from gateway.settings import TwilioSettings
from gateway.threads.models import Delivery, InboundEvent, InboundOutcome
from gateway.web import keys
from tests.fakes.twilio import sign_twilio_request

TOKEN = "inbound-sms-auth-token-0123456789"
URL = "https://gateway.test/webhooks/twilio/sms"
PAT = "+14155550177"

SECRET = "inbound-email-webhook-secret-0123456789"


@pytest.fixture
async def client(make_client):
    return await make_client(twilio=TwilioSettings("AC" + "d" * 32, TOKEN), inbound_email_secret=SECRET)


async def test_a_text_answering_an_sms_invitation_is_kept_for_triage(client, people, settings):
    await upsert_users(people, [UserIn(external_id="g-phone", role="guardian", name="Pat", phone=PAT)])
    campaign = await create_campaign(people, ["guardians"], dry_run=False, actor="api-key:tests")
    await run_campaign(campaign.id, settings.secret_key)
    invitation = await Delivery.get(address=PAT)
    await Delivery.filter(id=invitation.id).update(status="sent", provider_id="SMinvite")
    form = {"MessageSid": "SM" + "1" * 32, "AccountSid": "AC" + "d" * 32, "From": PAT, "To": invitation.sender,
            "Body": "What is this?", "NumMedia": "0", "ApiVersion": "2010-04-01"}
    response = await client.post("/webhooks/twilio/sms", data=form,
                                 headers={"X-Twilio-Signature": sign_twilio_request(TOKEN, URL, form)})
    assert response.status == 200
    await client.app[keys.INBOUND].wait_idle()
    event = await InboundEvent.get(provider_id="SM" + "1" * 32)
    assert event.outcome is InboundOutcome.UNMATCHED


async def test_an_email_answering_an_invitation_is_kept_for_triage(client, people, settings):
    campaign = await create_campaign(people, ["guardians"], dry_run=False, actor="api-key:tests")
    await run_campaign(campaign.id, settings.secret_key)
    invitation = await Delivery.get(address="john@family.example")
    await Delivery.filter(id=invitation.id).update(status="sent", provider_id="<d1.abc@reply.school.test>")
    raw = (b"From: John Smith <john@family.example>\r\nTo: school@reply.school.test\r\nSubject: Re: invitation\r\n"
           b"Message-ID: <r1@family.example>\r\nIn-Reply-To: <d1.abc@reply.school.test>\r\n"
           b"References: <d1.abc@reply.school.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"What is this?\r\n")
    response = await client.post("/webhooks/email", data=raw, headers={
        "Content-Type": "message/rfc822", "Authorization": f"Bearer {SECRET}"})
    assert response.status == 202, await response.text()
    await client.app[keys.INBOUND].wait_idle()
    event = await InboundEvent.get(provider_id="<r1@family.example>")
    assert event.outcome is InboundOutcome.UNMATCHED
