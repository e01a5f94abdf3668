"""A real `gateway worker` process is killed while it holds leases; another worker finishes the work.

Every message is sent, and none whose success was recorded is sent again.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from gateway.channels.base import DeliveryStatus
from gateway.channels.twilio_sms import TwilioSmsChannel
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.settings import TwilioSettings
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.dispatcher import Dispatcher
from gateway.threads.models import ConversationKind, Delivery


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def test_killed_worker_leases_expire_and_the_work_is_finished_once(school, settings, fake_twilio, tmp_path):
    await upsert_users(school, [UserIn(external_id="t", role="staff", name="T")] + [
        UserIn(external_id=f"g{i}", role="guardian", name=f"G{i}", phone=f"+1202555{i:04d}", channel_preference="sms")
        for i in range(20)])
    await send_communication(school, sender_external_id="t", kind=ConversationKind.ANNOUNCEMENT,
                             recipients=RecipientSpec(users=[f"g{i}" for i in range(20)]), subject="s", body="b",
                             secret_key=settings.secret_key)
    env = {**os.environ, "GATEWAY_DATABASE_URL": settings.database_url, "TWILIO_ACCOUNT_SID": fake_twilio.account_sid,
           "TWILIO_AUTH_TOKEN": fake_twilio.auth_token, "TWILIO_API_BASE_URL": fake_twilio.url,
           "GATEWAY_SMS_RATE_PER_NUMBER": "0", "GATEWAY_WORKER_BATCH_SIZE": "10", "GATEWAY_LEASE_SECONDS": "600",
           "GATEWAY_PUBLIC_URL": settings.public_url}
    fake_twilio.hang_after(10)
    worker = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "worker.log", "wb"))
    try:
        # Twilio answers 10 requests, then stops answering: the worker sits on its other leases.
        async def stalled() -> bool:
            return fake_twilio.attempts == 20 and await Delivery.filter(status=DeliveryStatus.SENT).count() == 10

        await wait_for(stalled)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert len(fake_twilio.sent) == 10
    held = await Delivery.filter(status=DeliveryStatus.QUEUED, claimed_by__isnull=False).count()
    assert held == 10

    # New requests are answered again (the dead worker's hung ones never will be).
    fake_twilio._hang_after, fake_twilio._hung = None, None
    channel = await TwilioSmsChannel.open(fake_twilio.account_sid, fake_twilio.auth_token, api_base_url=fake_twilio.url)
    survivor = Dispatcher(replace(settings, twilio=TwilioSettings(fake_twilio.account_sid, fake_twilio.auth_token)),
                          {"sms": channel})
    try:
        assert await survivor.drain() == 0  # the leases are still the dead worker's
        await Delivery.filter(claimed_by__isnull=False).update(
            claimed_until=datetime.now(timezone.utc) - timedelta(seconds=1))  # ...until they run out
        assert await survivor.drain() == 10
        await Delivery.all().update(claimed_until=datetime.now(timezone.utc) - timedelta(seconds=1))
        assert await survivor.drain() == 0
    finally:
        await channel.close()
    assert await Delivery.filter(status=DeliveryStatus.SENT).count() == 20
    recipients = [m.form["To"] for m in fake_twilio.sent]
    assert len(recipients) == 20 and len(set(recipients)) == 20
