"""Shared fixtures. Every database test runs on SQLite and on PostgreSQL.

PostgreSQL is found at GATEWAY_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres).
Without it the PostgreSQL half skips with a message saying so; in CI (CI set) it is an error, so a
skip can never hide a failure there. Each PostgreSQL test gets its own database, copied from a
template built once per session (CREATE DATABASE ... TEMPLATE is much faster than building tables).
"""
from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from tortoise.backends.base.executor import EXECUTOR_CACHE

from gateway.app import create_app
from gateway.channels.email_smtp import SmtpEmailChannel
from gateway.channels.twilio_sms import TwilioSmsChannel
from gateway.db import open_database
from gateway.directory.models import (
    ContactPoint,
    Membership,
    Relationship,
    School,
    Section,
    SectionMember,
    User,
)
from gateway.directory.schools import create_api_key
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.settings import Settings, TwilioSettings, load_settings
from gateway.threads.dispatcher import Dispatcher

pytest_plugins = ["tests.fakes.twilio", "tests.fakes.smtp", "tests.fakes.dovecot"]

PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
IN_CI = bool(os.environ.get("CI"))


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _pg_execute(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run_in_thread(coro: Awaitable[Any]) -> Any:
    """Run a coroutine to completion on a fresh loop in another thread (a test loop may be running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Any:
    """Name of a template database with the schema, or the reason PostgreSQL is unavailable."""
    name = f"gw_tmpl_{os.getpid()}"
    try:
        _run_in_thread(_pg_execute(f"DROP DATABASE IF EXISTS {name}"))
        _run_in_thread(_pg_execute(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
        yield UnavailableService(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
        return

    async def build() -> None:
        EXECUTOR_CACHE.clear()
        async with open_database(_pg_url(name), create_schema=True):
            pass

    _run_in_thread(build())
    yield name
    _run_in_thread(_pg_execute(f"DROP DATABASE IF EXISTS {name}"))


class UnavailableService(str):
    pass


def require(reason: Any) -> None:
    """Skip a test whose service is missing; in CI a missing service fails instead."""
    if isinstance(reason, UnavailableService):
        if IN_CI:
            pytest.fail(f"{reason} (CI must provide it)")
        pytest.skip(str(reason))


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database with the schema, open in the test's context; yields its URL."""
    EXECUTOR_CACHE.clear()  # tortoise caches SQL per connection name, not per dialect (STACK.md)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/test.sqlite3"
        async with open_database(url, create_schema=True):
            yield url
        return
    template = request.getfixturevalue("pg_template")
    require(template)
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    await _pg_execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    url = _pg_url(name)
    try:
        async with open_database(url):
            yield url
    finally:
        await _pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(db: str) -> Settings:
    """Test settings on the test's database, dev transports, no rate limits."""
    return load_settings(
        {}, environment="test", database_url=db, public_url="https://gateway.test", reply_domain="reply.school.test",
        sms_rate_per_number=0.0, smtp_rate=0.0, retry_base_seconds=30.0,
    )


@pytest.fixture
async def school(db: str) -> School:
    created, _ = await create_api_key("lincoln")
    created.name = "Lincoln Elementary"
    created.sms_numbers = ["+14155550100", "+14155550101"]
    created.quiet_hours_start = created.quiet_hours_end = 0  # tests opt in to quiet hours explicitly
    await created.save()
    return created


@pytest.fixture
async def api_key(school: School) -> str:
    _, key = await create_api_key(school.slug, name="tests")
    return key


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def make_client(settings: Settings, aiohttp_client: Any) -> ClientFactory:
    """Build the real app on the test's database; keyword arguments override settings."""
    # `settings` (hence the database) first: apps close before the test database is dropped.

    async def make(*, run_worker: bool = False, **overrides: Any) -> TestClient:
        app = create_app(replace(settings, **overrides), run_worker=run_worker, own_database=False)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient:
    return await make_client()


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark the PostgreSQL half so `-m "not postgres"` gives a quick local run.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db") == "postgres":
            item.add_marker(pytest.mark.postgres)


# A small school: two teachers, three families, two sections.
PEOPLE = [
    {"external_id": "t-rivera", "role": "staff", "name": "Ms. Rivera", "email": "rivera@school.example",
     "sections": ["3A"]},
    {"external_id": "t-chen", "role": "staff", "name": "Mr. Chen", "email": "chen@school.example", "sections": ["4B"]},
    {"external_id": "s-lucia", "role": "student", "name": "Lucía", "sections": ["3A"]},
    {"external_id": "s-tom", "role": "student", "name": "Tom", "sections": ["3A", "4B"]},
    {"external_id": "g-ana", "role": "guardian", "name": "Ana García", "phone": "+14155550142", "locale": "es",
     "email": "ana@family.example", "channel_preference": "sms", "guardian_of": ["s-lucia"], "sections": ["3A"]},
    {"external_id": "g-john", "role": "guardian", "name": "John Smith", "email": "john@family.example",
     "phone": "+14155550143", "channel_preference": "email", "guardian_of": ["s-tom"], "sections": ["3A", "4B"]},
    {"external_id": "g-wei", "role": "guardian", "name": "Li Wei", "email": "wei@family.example",
     "phone": "+14155550144", "channel_preference": "both", "guardian_of": ["s-tom"]},
]


@pytest.fixture
async def people(school: School) -> School:
    await upsert_users(school, [UserIn.model_validate(p) for p in PEOPLE])
    return school


# Provider fakes wired to the real channels and a dispatcher (outbox tests).
@pytest.fixture
def twilio_settings(settings: Settings, fake_twilio: Any) -> Settings:
    return replace(settings, twilio=TwilioSettings(fake_twilio.account_sid, fake_twilio.auth_token, fake_twilio.url))


@pytest.fixture
async def channels(fake_twilio: Any, fake_smtp: Any) -> AsyncIterator[dict[str, Any]]:
    sms = await TwilioSmsChannel.open(fake_twilio.account_sid, fake_twilio.auth_token, api_base_url=fake_twilio.url,
                                      timeout=2)
    email = SmtpEmailChannel(fake_smtp.host, fake_smtp.port, pool_size=2, timeout=5)
    yield {"sms": sms, "email": email}
    await sms.close()
    await email.close()


@pytest.fixture
def dispatcher(twilio_settings: Settings, channels: dict[str, Any]) -> Dispatcher:
    return Dispatcher(twilio_settings, channels, worker_id="w1")


async def directory_counts() -> dict[str, int]:
    """Rows of each directory table: "nothing was written" is these staying the same."""
    return {
        "users": await User.all().count(),
        "memberships": await Membership.all().count(),
        "contacts": await ContactPoint.all().count(),
        "relationships": await Relationship.all().count(),
        "sections": await Section.all().count(),
        "section_members": await SectionMember.all().count(),
    }
