"""Invitation campaign: planning time and peak memory for a big school, then the send rate.

    .venv/bin/python benchmarks/campaign.py [--users 100000] [--send 10000] [--database sqlite|postgres]

1. Seed (not timed, in a child process so its memory does not count): a school of 100,000 people,
   3,000 staff (e-mail), 67,000 guardians (a phone each, three in four an e-mail too) and 30,000
   students (two in three with login enabled and an e-mail); every third person has joined already,
   and 2 % of the phones have opted out (half of those people have no e-mail either).
2. Planning (timed, in a fresh process): one campaign over staff, guardians and students, run exactly
   as a worker runs it: choosing the targets, writing an Invitation row per person, a login token and
   an outbox delivery per invitation, the counts and the audit entry. Targets: at most 5 s on SQLite
   and at most 300 MB peak resident memory (VmHWM of this process, everything included).
3. Sending: `--send` of those invitations (both channels, 0 = all of them) through the dispatcher to
   the fake Twilio REST API and an aiosmtpd sink in a child process (benchmarks/_servers.py), rate
   limits off, beside a raw loop baseline: the same texts and e-mails rendered ahead of time and sent
   straight through the twilio client and aiosmtplib with the same concurrency, no database.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._raw import SMS_CONCURRENCY, SMTP_CONNECTIONS, raw_loop  # noqa: E402
from gateway.db import open_database  # noqa: E402


def peak_rss_mb() -> float:
    """VmHWM: the peak resident set of this process (Linux); ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------- seeding


async def seed(url: str, n: int) -> None:
    from gateway.directory.models import (
        ChannelPreference,
        ContactKind,
        ContactPoint,
        Membership,
        Role,
        School,
        User,
    )

    async with open_database(url, create_schema=True):
        school = await School.create(slug="bench", name="Bench School", quiet_hours_start=0, quiet_hours_end=0,
                                     sms_numbers=[f"+1415555{i:04d}" for i in range(100, 104)])
        staff, students = n * 3 // 100, n * 30 // 100
        guardians = n - staff - students
        joined = datetime.now(timezone.utc) - timedelta(days=30)
        roles = [Role.STAFF] * staff + [Role.GUARDIAN] * guardians + [Role.STUDENT] * students
        await User.bulk_create([
            User(name=f"Person {i}", locale="es" if i % 3 == 1 else None, joined_at=joined if i % 3 == 0 else None,
                 login_enabled=role is Role.STUDENT and i % 3 != 2, channel_preference=ChannelPreference.SMS)
            for i, role in enumerate(roles)], batch_size=2000)
        ids = await User.all().order_by("id").values_list("id", flat=True)
        await Membership.bulk_create([Membership(school=school, user_id=uid, external_id=f"p{i}", role=role)
                                      for i, (uid, role) in enumerate(zip(ids, roles))], batch_size=2000)
        points = []
        opted_out = datetime.now(timezone.utc) - timedelta(days=3)
        for i, (uid, role) in enumerate(zip(ids, roles)):
            if role is Role.GUARDIAN:
                points.append(ContactPoint(user_id=uid, kind=ContactKind.PHONE, address=f"+1202{i:07d}",
                                           opted_out_at=opted_out if i % 100 in (7, 8) else None))
            if role is Role.STAFF or (role is Role.GUARDIAN and i % 4) or (role is Role.STUDENT and i % 3 != 2):
                points.append(ContactPoint(user_id=uid, kind=ContactKind.EMAIL, address=f"p{i}@family.example"))
        await ContactPoint.bulk_create(points, batch_size=2000)


# ------------------------------------------------------------------------------------- sending


async def send(url: str, settings, sample: int) -> None:
    from gateway.channels.base import DeliveryStatus
    from gateway.channels.email_smtp import SmtpEmailChannel
    from gateway.channels.twilio_sms import TwilioSmsChannel
    from gateway.settings import TwilioSettings
    from gateway.threads.dispatcher import Dispatcher, _Batch
    from gateway.threads.models import Delivery
    from gateway.threads.render import render

    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "_servers.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        servers = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        settings = replace(settings, twilio=TwilioSettings(servers["sid"], servers["token"], servers["twilio"]),
                           worker_batch_size=500)
        async with open_database(url):
            queued = Delivery.filter(status=DeliveryStatus.QUEUED, message_id=None)
            ids = await queued.order_by("id").values_list("id", flat=True)
            if sample and sample < len(ids):  # an even spread of `sample` of them stays due, e-mail and SMS
                keep = set(ids[::len(ids) // sample][:sample])
                later = [i for i in ids if i not in keep]
                for start in range(0, len(later), 5000):
                    await Delivery.filter(id__in=later[start:start + 5000]).update(
                        next_attempt_at=datetime.now(timezone.utc) + timedelta(days=365))
            due = await Delivery.filter(status=DeliveryStatus.QUEUED, next_attempt_at__lte=datetime.now(timezone.utc))
            # The baseline sends exactly what the dispatcher will: rendered by the dispatcher's own loader.
            probe = Dispatcher(settings, {})
            batch = _Batch("probe", due)
            await probe._load(batch)
            items = [render(batch.contexts[d.id], settings) for d in due]
            sms_items = [i for d, i in zip(due, items) if d.channel == "sms"]
            email_items = [i for d, i in zip(due, items) if d.channel == "email"]
            total = len(due)
            raw_s = await raw_loop(servers, sms_items, email_items)

            sms = await TwilioSmsChannel.open(servers["sid"], servers["token"], api_base_url=servers["twilio"],
                                              max_connections=SMS_CONCURRENCY)
            mail = SmtpEmailChannel("127.0.0.1", servers["smtp_port"], pool_size=SMTP_CONNECTIONS)
            dispatcher = Dispatcher(settings, {"sms": sms, "email": mail}, sms_concurrency=SMS_CONCURRENCY,
                                    email_concurrency=SMTP_CONNECTIONS * 2)
            stop = asyncio.Event()
            start = time.perf_counter()
            task = asyncio.create_task(dispatcher.run(stop))
            while await Delivery.filter(status=DeliveryStatus.SENT).count() < total:
                await asyncio.sleep(0.05)
            dispatch_s = time.perf_counter() - start
            stop.set()
            await task
            await sms.close()
            await mail.close()
        raw_rate, dispatch_rate = total / raw_s, total / dispatch_s
        print(f"sending {total} invitations ({len(sms_items)} SMS, {len(email_items)} e-mails), rate limits off:")
        print(f"  raw loop (twilio client + aiosmtplib, no database): {raw_s:6.2f} s = {raw_rate:,.0f} msg/s")
        print(f"  dispatcher (outbox):                               {dispatch_s:6.2f} s = {dispatch_rate:,.0f} msg/s")
        print(f"  ratio dispatcher/raw: {dispatch_rate / raw_rate:.2f}")
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)


# ------------------------------------------------------------------------------------- planning


async def plan(url: str, settings) -> None:
    from gateway.directory.models import School
    from gateway.invites.campaigns import create_campaign, run_campaign
    from gateway.invites.models import Invitation
    from gateway.threads.models import Delivery

    async with open_database(url):
        school = await School.get(slug="bench")
        campaign = await create_campaign(school, ["staff", "guardians", "students"], dry_run=False,
                                         actor="benchmark")
        before = peak_rss_mb()
        start = time.perf_counter()
        done = await run_campaign(campaign.id, settings.secret_key)
        elapsed = time.perf_counter() - start
        peak = peak_rss_mb()
        assert done is not None and done.error is None, done
        rows = await Invitation.filter(campaign_id=campaign.id).count()
        deliveries = await Delivery.filter(message_id=None).count()
    print(f"planning: {done.targeted:,} people in {elapsed:.2f} s (target <= 5 s on SQLite): invited {done.invited:,} "
          f"({deliveries:,} deliveries), skipped joined {done.skipped_joined:,}, not enabled "
          f"{done.skipped_not_enabled:,}, no contact {done.skipped_no_contact:,}; {rows:,} invitation rows")
    print(f"peak resident memory: {peak:.0f} MB (target <= 300 MB; {before:.0f} MB before planning)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--send", type=int, default=10_000, help="invitations to send (0: all)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--step", choices=("seed", "plan", "send"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from gateway.settings import load_settings

    if args.step:  # a child process: one step on an existing database
        settings = load_settings({}, environment="test", database_url=args.url, sms_rate_per_number=0.0,
                                 smtp_rate=0.0, public_url="https://gw.example", reply_domain="reply.example")
        step = {"seed": lambda: seed(args.url, args.users), "plan": lambda: plan(args.url, settings),
                "send": lambda: send(args.url, settings, args.send)}[args.step]
        asyncio.run(step())
        return

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3" if args.database == "sqlite" else asyncio.run(_fresh_pg())
        try:
            for step in ("seed", "plan", "send"):
                started = time.perf_counter()
                subprocess.run([sys.executable, __file__, "--step", step, "--url", url, "--users", str(args.users),
                                "--send", str(args.send)], check=True)
                if step == "seed":
                    print(f"seeded {args.users:,} people on {args.database} in {time.perf_counter() - started:.1f} s")
        finally:
            if args.database == "postgres":
                asyncio.run(_drop_pg(url))


async def _fresh_pg() -> str:
    import asyncpg

    name = f"gw_bench_campaign_{os.getpid()}"
    conn = await asyncpg.connect("postgres://postgres@127.0.0.1:5432/postgres")
    await conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return f"postgres://postgres@127.0.0.1:5432/{name}"


async def _drop_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect("postgres://postgres@127.0.0.1:5432/postgres")
    await conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    await conn.close()


if __name__ == "__main__":
    main()
