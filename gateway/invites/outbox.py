"""Login links go out through the outbox, like every message (DESIGN sections 3, 5 and 6).

A link delivery is a Delivery with no Message: it points at the LoginToken whose link it carries
and at the school it is sent for. The token itself is never stored; the dispatcher derives it from
the token's salt when it renders the delivery (gateway.invites.tokens), so retries, quiet hours,
opt-outs and fallback to the other channel work exactly as for messages.

Channel: the one given, else e-mail when there is a usable address, else SMS (the "invitation"
rule of gateway.threads.channel_choice). Links live at /join/<token> (first login, from an
invitation) and /login/<token> (sign-in links).
"""
from __future__ import annotations

import hmac
from datetime import datetime, timezone
from typing import Sequence

from gateway.directory.models import ChannelPreference, ContactPoint, School
from gateway.invites.tokens import LoginToken, Purpose, derive_token, hash_token
from gateway.threads.channel_choice import (
    EMAIL,
    SMS,
    Contact,
    Route,
    choose_routes,
    usable_address,
)
from gateway.threads.models import Delivery
from gateway.threads.sms_pool import link_sender

LINK_PATHS = {Purpose.FIRST_LOGIN: "/join/", Purpose.LOGIN: "/login/"}


def link_url(public_url: str, purpose: Purpose | str, token: str) -> str:
    """The magic link for `token`: /join/<token> for a first login, /login/<token> for a sign-in link."""
    return f"{public_url.rstrip('/')}{LINK_PATHS[Purpose(purpose)]}{token}"


def link_route(contacts: Sequence[Contact], pool: Sequence[str], channel: str | None = None) -> Route | None:
    """The (channel, address) a link goes to, or None when the person has no usable contact point."""
    if channel is not None:
        if channel == SMS and not pool:
            return None
        address = usable_address(contacts, channel)
        return Route(channel, address) if address else None
    route = choose_routes("invitation", ChannelPreference.EMAIL, contacts, sms_available=bool(pool))[0]
    return None if route.suppressed else route


async def user_contacts(user_id: int) -> list[Contact]:
    return [Contact(cp.kind, cp.address, cp.problem) for cp in await ContactPoint.filter(user_id=user_id).order_by("id")]


async def queue_link_message(user_id: int, school_id: int, purpose: Purpose, token: LoginToken, *,
                             channel: str | None = None, secret_key: str) -> Delivery | None:
    """Queue the invitation (purpose first_login) or sign-in link (purpose login) carrying `token`.

    By `channel` if given ("email" or "sms"), else by e-mail when usable, else by SMS. Returns the
    delivery, or None when the person has no usable contact point on that channel (or at all).
    A link someone asks for is sent at once, quiet hours or not: they are waiting for it, and a
    15-minute sign-in link held until morning would be dead on arrival. Opt-outs still apply (the
    dispatcher checks the address again when it sends). Wake the dispatcher after calling this.
    """
    purpose = Purpose(purpose)
    if channel not in (None, EMAIL, SMS):
        raise ValueError(f"channel must be 'email', 'sms' or None, not {channel!r}")
    if token.user_id != user_id or Purpose(token.purpose) is not purpose:
        raise ValueError("the token belongs to another user or purpose")
    # The link is derived again from the salt when the message is sent: it must be this key's token.
    if not hmac.compare_digest(hash_token(derive_token(secret_key, purpose, token.salt)), token.token_hash):
        raise ValueError("the token was not issued under this secret key")
    school = await School.get(id=school_id)
    route = link_route(await user_contacts(user_id), list(school.sms_numbers or []), channel)
    if route is None:
        return None
    return await Delivery.create(
        message_id=None, login_token_id=token.id, school_id=school.id, recipient_id=user_id, channel=route.channel,
        address=route.address, sender=link_sender(school.sms_numbers or [], user_id) if route.channel == SMS else None,
        urgent=True, next_attempt_at=datetime.now(timezone.utc),
    )
