"""Provider fakes wired to real channels, as in tests/threads/test_dispatcher.py."""
from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.channels.email_smtp import SmtpEmailChannel
from gateway.channels.twilio_sms import TwilioSmsChannel
from gateway.settings import Settings, TwilioSettings
from gateway.threads.dispatcher import Dispatcher


@pytest.fixture
def twilio_settings(settings: Settings, fake_twilio) -> Settings:
    return replace(settings, twilio=TwilioSettings(fake_twilio.account_sid, fake_twilio.auth_token, fake_twilio.url))


@pytest.fixture
async def channels(fake_twilio, fake_smtp):
    sms = await TwilioSmsChannel.open(fake_twilio.account_sid, fake_twilio.auth_token, api_base_url=fake_twilio.url,
                                      timeout=2)
    email = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, pool_size=2, timeout=5)
    yield {"sms": sms, "email": email}
    await sms.close()
    await email.close()


@pytest.fixture
def dispatcher(twilio_settings: Settings, channels) -> Dispatcher:
    return Dispatcher(twilio_settings, channels, worker_id="w1")
