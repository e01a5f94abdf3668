"""`gateway demo`: a seeded demo school on the dev transports, so a newcomer sees the product work.

It creates (once) a school with staff, guardians, students and two sections, sends an announcement
and a conversation, and serves on GATEWAY_HOST:GATEWAY_PORT (127.0.0.1:8080). What the dev
transports "sent" appears at /dev/mailbox.
"""
from __future__ import annotations

import asyncio
import dataclasses
import sys
from datetime import datetime, timezone

from gateway.db import migrate_database, open_database
from gateway.directory.models import Membership, Role, School, User
from gateway.directory.schools import create_api_key
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.invites.passwords import cost_for, hash_password
from gateway.settings import Settings
from gateway.threads.compose import RecipientSpec, send_communication
from gateway.threads.models import ConversationKind

DEMO_SLUG = "demo"
# Demo accounts that can sign in at /login (never in production: see `seed`).
DEMO_PASSWORD = "riverside demo school"
DEMO_SIGN_INS = {"t-rivera": "rivera@school.example", "t-chen": "chen@school.example",
                 "g-john": "john.smith@family.example", "g-ana": "+1 415 555 0142"}
PEOPLE = [
    {"external_id": "t-rivera", "role": "staff", "name": "Ms. Rivera", "email": "rivera@school.example",
     "sections": ["Grade 3 Rivera"]},
    {"external_id": "t-chen", "role": "staff", "name": "Mr. Chen", "email": "chen@school.example", "is_admin": True,
     "sections": ["Grade 4 Chen"]},
    {"external_id": "s-lucia", "role": "student", "name": "Lucía García", "sections": ["Grade 3 Rivera"]},
    {"external_id": "s-tom", "role": "student", "name": "Tom Smith", "sections": ["Grade 3 Rivera"]},
    {"external_id": "s-mei", "role": "student", "name": "Mei Li", "sections": ["Grade 4 Chen"], "login_enabled": True},
    {"external_id": "g-ana", "role": "guardian", "name": "Ana García", "phone": "+1 415 555 0142", "locale": "es",
     "channel_preference": "sms", "guardian_of": ["s-lucia"], "sections": ["Grade 3 Rivera"]},
    {"external_id": "g-john", "role": "guardian", "name": "John Smith", "email": "john.smith@family.example",
     "channel_preference": "email", "guardian_of": ["s-tom"], "sections": ["Grade 3 Rivera"]},
    {"external_id": "g-wei", "role": "guardian", "name": "Li Wei", "email": "li.wei@family.example",
     "phone": "+1 415 555 0177", "channel_preference": "both", "guardian_of": ["s-mei"], "sections": ["Grade 4 Chen"]},
]


async def seed(settings: Settings) -> str | None:
    """Create the demo school and send its first messages; returns a new API key, or None if seeded."""
    await migrate_database(settings.database_url)
    async with open_database(settings.database_url):
        if await School.exists(slug=DEMO_SLUG):
            return None
        school, key = await create_api_key(DEMO_SLUG, name="demo", actor="demo")
        school.name = "Riverside Elementary"
        school.timezone = "America/Los_Angeles"
        school.sms_numbers = ["+14155550100", "+14155550101"]
        school.quiet_hours_start = school.quiet_hours_end = 0  # the demo should show SMS at any hour
        await school.save()
        await upsert_users(school, [UserIn.model_validate(p) for p in PEOPLE])
        if not settings.is_production:
            await _give_demo_passwords(school, settings)
        await send_communication(
            school, sender_external_id="t-chen", kind=ConversationKind.ANNOUNCEMENT,
            recipients=RecipientSpec(roles=[Role.GUARDIAN]), subject="Welcome back!",
            body="School starts Monday at 8:15. Doors open at 7:45.", secret_key=settings.secret_key,
        )
        await send_communication(
            school, sender_external_id="t-rivera", kind=ConversationKind.CONVERSATION,
            recipients=RecipientSpec(users=["g-ana", "g-john"]), subject="Field trip on Friday",
            body="Could you sign and return the permission slip by Thursday? Just reply to this message.",
            private=True, secret_key=settings.secret_key,
        )
        return key


async def _give_demo_passwords(school: School, settings: Settings) -> None:
    now = datetime.now(timezone.utc)
    hashed = await hash_password(DEMO_PASSWORD, cost_for(settings))
    for external_id in DEMO_SIGN_INS:
        membership = await Membership.get(school=school, external_id=external_id)
        await User.filter(id=membership.user_id).update(password_hash=hashed, joined_at=now)


def run_demo(settings: Settings, *, serve: bool = True) -> int:
    settings = dataclasses.replace(settings, twilio=None, smtp=None)  # the demo never sends for real
    key = asyncio.run(seed(settings))
    base = settings.public_url
    if key:
        print(key)
        sys.stderr.write(f"Demo school seeded. API key (shown once): {key}\n")
    sys.stderr.write(f"Dev mailbox: {base}/dev/mailbox   API: {base}/api/v1/openapi.json\n")
    if not settings.is_production:
        who = ", ".join(DEMO_SIGN_INS.values())
        sys.stderr.write(f"Sign in at {base}/login as any of {who} with the password {DEMO_PASSWORD!r}\n")
    if not serve:
        return _send_now(settings)
    from aiohttp import web

    from gateway.app import create_app

    web.run_app(create_app(settings, run_worker=True), host=settings.host, port=settings.port,
                print=lambda s: print(s, file=sys.stderr))
    return 0


def _send_now(settings: Settings) -> int:
    from gateway.app import open_channels
    from gateway.threads.dispatcher import Dispatcher

    async def drain() -> int:
        async with open_database(settings.database_url):
            channels = await open_channels(settings)
            sent = await Dispatcher(dataclasses.replace(settings, sms_rate_per_number=0), channels).drain()
        return sent

    sys.stderr.write(f"sent {asyncio.run(drain())} deliveries to the dev mailbox\n")
    return 0
