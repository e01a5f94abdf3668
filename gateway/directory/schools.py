"""Schools and their admin API keys."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timezone

from tortoise.transactions import in_transaction

from gateway.directory.models import ApiKey, AuditLog, School

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KEY_PREFIX = "gk_"


class InvalidSlug(ValueError):
    pass


class InvalidKeyName(ValueError):
    pass


def check_slug(slug: str) -> None:
    if not SLUG_RE.match(slug):
        raise InvalidSlug(f"school slug must be lower-case letters, digits and dashes, got {slug!r}")


def check_key_name(name: str) -> None:
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise InvalidKeyName(f"key name must be 1 to 100 printable characters, got {name[:120]!r}")


def hash_api_key(key: str) -> str:
    # The key carries 256 random bits, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(slug: str, *, name: str = "default", actor: str = "cli") -> tuple[School, str]:
    """Create an API key for the school `slug`, creating the school if it is new.

    Returns the school and the key; only the key's hash is stored, so this is the one time it is seen.
    """
    check_slug(slug)
    check_key_name(name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with in_transaction():
        school = await School.get_or_none(slug=slug)
        if school is None:
            school = await School.create(slug=slug, name=slug.replace("-", " ").title())
        await ApiKey.create(school=school, name=name, key_hash=hash_api_key(key), prefix=key[:10])
        await AuditLog.create(school=school, actor=actor, action="api_key.create", target=name)
    return school, key


async def authenticate_api_key(key: str) -> ApiKey | None:
    """The live ApiKey (with its school) for `key`, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_api_key(key)
    api_key = await ApiKey.get_or_none(key_hash=digest, revoked_at=None).select_related("school")
    # The lookup is by hash, so timing says nothing about the key; compare anyway, constant-time.
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    now = datetime.now(timezone.utc)
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        await ApiKey.filter(id=api_key.id).update(last_used_at=now)
    return api_key
