"""Schools and their API keys."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.directory.models import ApiKey, AuditLog, School
from gateway.directory.schools import (
    InvalidKeyName,
    InvalidSlug,
    authenticate_api_key,
    create_api_key,
    hash_api_key,
)


async def test_create_api_key_creates_the_school_once(db):
    school, key = await create_api_key("lincoln-elementary", name="sis")
    assert key.startswith("gk_") and len(key) >= 40
    assert school.slug == "lincoln-elementary" and school.name == "Lincoln Elementary"
    again, second = await create_api_key("lincoln-elementary")
    assert again.id == school.id and second != key
    assert await School.all().count() == 1
    stored = await ApiKey.filter(school=school).order_by("id")
    assert [k.name for k in stored] == ["sis", "default"]
    assert stored[0].key_hash == hash_api_key(key) and key not in (stored[0].key_hash, stored[0].prefix)
    assert await AuditLog.filter(school=school, action="api_key.create").count() == 2


@pytest.mark.parametrize("slug", ["", "Lincoln", "-lincoln", "lincoln school", "x" * 65, "lincoln_1"])
async def test_bad_slugs_are_refused(db, slug):
    with pytest.raises(InvalidSlug):
        await create_api_key(slug)
    assert await School.all().count() == 0


@pytest.mark.parametrize("name", ["", " ", "n" * 101, "a\tb"])
async def test_bad_key_names_are_refused(db, name):
    with pytest.raises(InvalidKeyName):
        await create_api_key("lincoln", name=name)
    assert await School.all().count() == 0


async def test_authenticate(db):
    school, key = await create_api_key("lincoln")
    found = await authenticate_api_key(key)
    assert found is not None and found.school.id == school.id
    assert found.last_used_at is None  # the row is read before it is marked
    assert (await ApiKey.get(id=found.id)).last_used_at is not None
    assert await authenticate_api_key(key + "x") is None
    assert await authenticate_api_key("gk_" + "a" * 43) is None
    assert await authenticate_api_key(key.removeprefix("gk_")) is None
    assert await authenticate_api_key("") is None
    await ApiKey.filter(id=found.id).update(revoked_at=datetime.now(timezone.utc))
    assert await authenticate_api_key(key) is None
