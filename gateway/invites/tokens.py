"""Login tokens: the secret in a magic link (DESIGN section 6).

A token is random (it carries 256 bits of HMAC output, 128 of which are kept: at least the 128
the issue asks for), scoped by purpose (first_login from an invitation, login from "send me a link"),
single-use and expiring. Only SHA-256(token) and a salt are stored: the token itself is
HMAC-SHA256(secret key, purpose + salt), so the outbox can put it in a message when it sends it
without the database ever holding it in clear. Lookups are by hash and the final comparison is
constant-time.
"""
from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tortoise import fields
from tortoise.models import Model

TOKEN_RE = re.compile(r"^[a-z2-7]{26}$")
FIRST_LOGIN_TTL = timedelta(days=14)
LOGIN_TTL = timedelta(minutes=15)


class Purpose(str, enum.Enum):
    FIRST_LOGIN = "first_login"
    LOGIN = "login"


class LoginToken(Model):
    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="login_tokens")
    purpose = fields.CharEnumField(Purpose, max_length=16)
    salt = fields.CharField(max_length=32)
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "login_token"
        indexes = (("user_id", "purpose"),)


def derive_token(secret_key: str, purpose: Purpose, salt: str) -> str:
    digest = hmac.new(secret_key.encode(), f"login-token:{purpose.value}:{salt}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:16]).decode().rstrip("=").lower()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(user_id: int, purpose: Purpose, secret_key: str, *, ttl: timedelta | None = None,
                      now: datetime | None = None) -> tuple[LoginToken, str]:
    """Create a token for the user; returns the row and the token (shown once, never stored)."""
    now = now or datetime.now(timezone.utc)
    ttl = ttl or (FIRST_LOGIN_TTL if purpose is Purpose.FIRST_LOGIN else LOGIN_TTL)
    salt = secrets.token_hex(16)
    token = derive_token(secret_key, purpose, salt)
    row = await LoginToken.create(user_id=user_id, purpose=purpose, salt=salt, token_hash=hash_token(token),
                                  expires_at=now + ttl)
    return row, token


class TokenProblem(str, enum.Enum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    WRONG_PURPOSE = "wrong_purpose"


@dataclass(frozen=True)
class TokenCheck:
    token: LoginToken | None
    problem: TokenProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def check_token(token: str, purposes: tuple[Purpose, ...], *, now: datetime | None = None) -> TokenCheck:
    """Is `token` usable for one of `purposes`? Never consumes it (mail scanners open links)."""
    if not TOKEN_RE.match(token or ""):
        return TokenCheck(None, TokenProblem.UNKNOWN)
    digest = hash_token(token)
    row = await LoginToken.get_or_none(token_hash=digest)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return TokenCheck(None, TokenProblem.UNKNOWN)
    now = now or datetime.now(timezone.utc)
    if row.purpose not in purposes:
        return TokenCheck(row, TokenProblem.WRONG_PURPOSE)
    if row.used_at is not None:
        return TokenCheck(row, TokenProblem.USED)
    if row.expires_at <= now:
        return TokenCheck(row, TokenProblem.EXPIRED)
    return TokenCheck(row, None)


async def consume_token(row: LoginToken, *, now: datetime | None = None) -> bool:
    """Mark the token used; False if someone else used it first (a conditional UPDATE, race-safe)."""
    now = now or datetime.now(timezone.utc)
    return bool(await LoginToken.filter(id=row.id, used_at=None, expires_at__gt=now).update(used_at=now))


async def revoke_login_links(user_id: int, *, now: datetime | None = None) -> int:
    """A password change invalidates every outstanding login link of the user."""
    now = now or datetime.now(timezone.utc)
    return await LoginToken.filter(user_id=user_id, purpose=Purpose.LOGIN, used_at=None).update(used_at=now)
