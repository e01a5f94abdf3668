"""`gateway demo`: a newcomer gets a seeded school, its first messages, and accounts to sign in with."""
from __future__ import annotations

import asyncio

from gateway.db import open_database
from gateway.demo import DEMO_PASSWORD, DEMO_SIGN_INS, run_demo
from gateway.directory.models import Membership, User
from gateway.invites.passwords import TEST_COST, verify_password
from gateway.settings import load_settings


def test_the_demo_seeds_sends_and_prints_how_to_sign_in(tmp_path, capsys):
    settings = load_settings({"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/demo.sqlite3"})
    assert run_demo(settings, serve=False) == 0
    err = capsys.readouterr().err
    assert "Sign in at http://127.0.0.1:8080/login" in err and DEMO_PASSWORD in err
    assert "sent " in err and "deliveries to the dev mailbox" in err

    async def check() -> None:
        async with open_database(settings.database_url):
            for external_id in DEMO_SIGN_INS:
                user = await User.get(id=(await Membership.get(external_id=external_id)).user_id)
                assert await verify_password(user.password_hash, DEMO_PASSWORD, TEST_COST), external_id

    asyncio.run(check())
    assert run_demo(settings, serve=False) == 0  # a second run keeps the seeded school
