"""Outbound throughput: the dispatcher against a raw send loop, and the time to compose.

    .venv/bin/python benchmarks/outbound.py [--deliveries 10000] [--database sqlite|postgres]

1. Compose: a 10,000-recipient announcement (half prefer SMS, half e-mail) written by
   send_communication on a fresh SQLite file: Message, participants, reply tokens, SMS routes and
   10,000 deliveries in one transaction. Target: under 3 s.
2. Baseline: the same 5,000 SMS through the twilio client and 5,000 e-mails through aiosmtplib
   directly: the same texts and headers, rendered before the clock starts, MIME built with the
   standard library, the same concurrency as the dispatcher (32 SMS requests in flight, 4 SMTP
   connections), and no database.
3. Dispatcher: those 10,000 deliveries through the outbox (claim with lease, render per recipient
   language, send, record), rate limits off.
Prints both rates and the ratio (target: at least 0.5). The provider fakes run in a child process
(benchmarks/_servers.py) so they do not compete for our core.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from benchmarks._pg import drop_pg, fresh_pg  # noqa: E402
from benchmarks._raw import SMS_CONCURRENCY, SMTP_CONNECTIONS, raw_loop  # noqa: E402
from gateway.channels.email_smtp import SmtpEmailChannel  # noqa: E402
from gateway.channels.twilio_sms import TwilioSmsChannel  # noqa: E402
from gateway.db import open_database  # noqa: E402
from gateway.directory.models import (  # noqa: E402
    ChannelPreference,
    ContactKind,
    ContactPoint,
    Membership,
    Role,
    School,
    User,
)
from gateway.settings import TwilioSettings, load_settings  # noqa: E402
from gateway.threads.compose import RecipientSpec, send_communication  # noqa: E402
from gateway.threads.dispatcher import Dispatcher  # noqa: E402
from gateway.threads.models import ConversationKind, Delivery  # noqa: E402


async def seed(n: int) -> School:
    school = await School.create(slug="bench", name="Bench School", sms_numbers=[f"+1415555{i:04d}" for i in range(100, 104)],
                                 quiet_hours_start=0, quiet_hours_end=0)
    await User.bulk_create([User(name=f"Guardian {i}", locale="es" if i % 3 == 0 else None,
                                 channel_preference=ChannelPreference.SMS if i % 2 else ChannelPreference.EMAIL)
                            for i in range(n)] + [User(name="Ms. Rivera")], batch_size=1000)
    users = await User.all().order_by("id").values_list("id", flat=True)
    staff, guardians = users[-1], users[:-1]
    await Membership.bulk_create([Membership(school=school, user_id=uid, external_id=f"g{i}", role=Role.GUARDIAN)
                                  for i, uid in enumerate(guardians)]
                                 + [Membership(school=school, user_id=staff, external_id="t", role=Role.STAFF)], batch_size=1000)
    await ContactPoint.bulk_create(
        [ContactPoint(user_id=uid, kind=ContactKind.PHONE, address=f"+1202555{i:04d}") for i, uid in enumerate(guardians)]
        + [ContactPoint(user_id=uid, kind=ContactKind.EMAIL, address=f"g{i}@family.example") for i, uid in enumerate(guardians)],
        batch_size=1000)
    return school


def same_items(settings, n_sms: int, n_email: int) -> tuple[list, list]:
    """What the dispatcher will send, rendered ahead of time for the raw loop (not timed)."""
    from gateway.threads.addresses import new_salt, reply_token
    from gateway.threads.render import OutboundContext, render

    def item(i: int, channel: str, to: str):
        return render(OutboundContext(
            delivery_id=i, conversation_id=1, channel=channel, to=to, sms_sender="+14155550100",
            kind="announcement", subject="Welcome back", body="School starts Monday at 8:15.", urgent=False,
            author_name="Ms. Rivera", school_name="Bench School", locale="es" if i % 3 == 0 else "en",
            reply_token=reply_token(settings.secret_key, new_salt()), reply_domain=settings.reply_domain), settings)

    return ([item(i, "sms", f"+1202555{i:04d}") for i in range(n_sms)],
            [item(i, "email", f"g{i}@family.example") for i in range(n_email)])


async def run(n: int, database: str) -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "_servers.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        servers = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite3" if database == "sqlite" else await fresh_pg("gw_bench")
            settings = load_settings({}, environment="test", database_url=url, sms_rate_per_number=0.0, smtp_rate=0.0,
                                     public_url="https://gw.example", reply_domain="reply.example")
            settings = replace(settings, twilio=TwilioSettings(servers["sid"], servers["token"], servers["twilio"]),
                               worker_batch_size=500)
            async with open_database(url, create_schema=True):
                school = await seed(n)
                start = time.perf_counter()
                result = await send_communication(
                    school, sender_external_id="t", kind=ConversationKind.ANNOUNCEMENT,
                    recipients=RecipientSpec(roles=[Role.GUARDIAN]), subject="Welcome back",
                    body="School starts Monday at 8:15.", secret_key=settings.secret_key)
                compose_s = time.perf_counter() - start
                n_sms = await Delivery.filter(channel="sms").count()
                n_email = await Delivery.filter(channel="email").count()
                print(f"compose: {result.deliveries} deliveries for {n} recipients in {compose_s:.2f} s "
                      f"on {database} (target < 3 s)")

                raw_s = await raw_loop(servers, *same_items(settings, n_sms, n_email))

                sms = await TwilioSmsChannel.open(servers["sid"], servers["token"], api_base_url=servers["twilio"],
                                                  max_connections=SMS_CONCURRENCY)
                email = SmtpEmailChannel("127.0.0.1", servers["smtp_port"], pool_size=SMTP_CONNECTIONS)
                dispatcher = Dispatcher(settings, {"sms": sms, "email": email}, sms_concurrency=SMS_CONCURRENCY,
                                        email_concurrency=SMTP_CONNECTIONS * 2)
                stop = asyncio.Event()
                start = time.perf_counter()
                task = asyncio.create_task(dispatcher.run(stop))
                total = n_sms + n_email
                while await Delivery.filter(status="sent").count() < total:
                    await asyncio.sleep(0.05)
                dispatch_s = time.perf_counter() - start
                stop.set()
                await task
                await sms.close()
                await email.close()
            if database == "postgres":
                await drop_pg(url)
        raw_rate, dispatch_rate = total / raw_s, total / dispatch_s
        print(f"raw loop (twilio client + aiosmtplib, no database): {total} in {raw_s:.2f} s = {raw_rate:,.0f} msg/s")
        print(f"dispatcher (outbox on {database}):                   {total} in {dispatch_s:.2f} s = {dispatch_rate:,.0f} msg/s")
        print(f"ratio dispatcher/raw: {dispatch_rate / raw_rate:.2f} (target >= 0.5)")
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)




if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000, help="recipients (one delivery each)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    asyncio.run(run(args.deliveries, args.database))
