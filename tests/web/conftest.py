"""Signed-in browsers for page tests: `signed_in("g-ana")` is a test client with a live session."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.directory.models import Membership, User
from gateway.invites.passwords import TEST_COST, hash_password

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
PASSWORD = "blue heron at dawn"

SignIn = Callable[..., Awaitable[TestClient]]


async def csrf_of(client: TestClient, path: str) -> str:
    """The CSRF token of the form on `path` (as a browser would read it from the page)."""
    response = await client.get(path)
    assert response.status == 200, (path, response.status)
    return CSRF.search(await response.text()).group(1)


async def give_password(external_id: str, password: str = PASSWORD) -> User:
    user_id = (await Membership.filter(external_id=external_id).first()).user_id
    await User.filter(id=user_id).update(password_hash=await hash_password(password, TEST_COST),
                                         joined_at=datetime.now(timezone.utc))
    return await User.get(id=user_id)


@pytest.fixture
def signed_in(make_client: Any) -> SignIn:
    """A new browser (its own cookie jar) signed in as the person with this external id."""

    async def sign_in(external_id: str, *, client: TestClient | None = None, **overrides: Any) -> TestClient:
        user = await give_password(external_id)
        client = client or await make_client(public_url="http://127.0.0.1:8080", **overrides)
        address = (await user.contact_points.all().order_by("id").first()).address
        token = await csrf_of(client, "/login")
        response = await client.post("/login", data={"csrf_token": token, "address": address, "password": PASSWORD},
                                     allow_redirects=False)
        assert response.status == 303, await response.text()
        return client

    return sign_in
