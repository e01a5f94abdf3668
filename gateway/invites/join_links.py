"""The join link in every e-mail to someone who has not joined yet: nobody needs an invitation to join.

The dispatcher calls `join_tokens` once per batch with the e-mail recipients who have no
`joined_at`. People who may log in (staff and guardians always, students when login_enabled) get a
first_login token: an unexpired, unused one is reused (so a day of e-mails does not mint a token per
message), otherwise one is issued. One query reads the batch's tokens; one insert writes the new ones.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Iterable, Mapping

from gateway.directory.models import Membership, Role
from gateway.invites.tokens import (
    FIRST_LOGIN_TTL,
    LoginToken,
    Purpose,
    derive_token,
    hash_token,
)

# A token that stops working within this margin is not put in a new e-mail: it might be read late.
REUSE_MARGIN = timedelta(days=2)


async def may_log_in(user_ids: Iterable[int], login_enabled: Mapping[int, bool]) -> set[int]:
    """Who of `user_ids` may log in: login_enabled, or staff or guardian in some school."""
    ids = set(user_ids)
    allowed = {uid for uid in ids if login_enabled.get(uid)}
    rest = ids - allowed
    if rest:
        allowed |= set(await Membership.filter(user_id__in=list(rest), role__in=[Role.STAFF, Role.GUARDIAN])
                       .values_list("user_id", flat=True))
    return allowed


async def join_tokens(user_ids: Iterable[int], login_enabled: Mapping[int, bool], secret_key: str, *,
                      now: datetime) -> dict[int, str]:
    """user id → a first_login token to put in their e-mail, for each of `user_ids` who may log in."""
    allowed = await may_log_in(user_ids, login_enabled)
    if not allowed:
        return {}
    found: dict[int, str] = {}
    rows = await LoginToken.filter(
        user_id__in=list(allowed), purpose=Purpose.FIRST_LOGIN, used_at=None, expires_at__gt=now + REUSE_MARGIN,
    ).order_by("expires_at").values("user_id", "salt", "token_hash")
    for row in rows:  # the one that lasts longest wins
        token = derive_token(secret_key, Purpose.FIRST_LOGIN, row["salt"])
        if hash_token(token) == row["token_hash"]:  # issued under another secret key: unusable
            found[row["user_id"]] = token
    new: list[LoginToken] = []
    for uid in sorted(allowed - found.keys()):
        salt = secrets.token_hex(16)
        token = derive_token(secret_key, Purpose.FIRST_LOGIN, salt)
        new.append(LoginToken(user_id=uid, purpose=Purpose.FIRST_LOGIN, salt=salt, token_hash=hash_token(token),
                              expires_at=now + FIRST_LOGIN_TTL))
        found[uid] = token
    if new:
        await LoginToken.bulk_create(new, batch_size=1000)
    return found
