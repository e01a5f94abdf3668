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


# Inbound texts signed exactly as Twilio signs them (pages that show replies need real ones).
TWILIO_TOKEN = "pages-twilio-auth-token-0123456789"
TWILIO_SMS_URL = "http://127.0.0.1:8080/webhooks/twilio/sms"
_sids = iter(f"SM{i:032x}" for i in range(1, 100_000))


def twilio_overrides() -> dict[str, Any]:
    from gateway.settings import TwilioSettings

    return {"twilio": TwilioSettings("AC" + "e" * 32, TWILIO_TOKEN)}


async def text_in(client: TestClient, body: str, *, sender: str, to: str) -> Any:
    """POST a text to the inbound webhook as Twilio would (the client's public URL is 127.0.0.1:8080)."""
    from tests.fakes.twilio import sign_twilio_request

    form = {"MessageSid": next(_sids), "AccountSid": "AC" + "e" * 32, "From": sender, "To": to, "Body": body,
            "NumMedia": "0", "ApiVersion": "2010-04-01"}
    return await client.post("/webhooks/twilio/sms", data=form,
                             headers={"X-Twilio-Signature": sign_twilio_request(TWILIO_TOKEN, TWILIO_SMS_URL, form)})
