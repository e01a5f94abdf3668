"""GET and PATCH /api/v1/school: the school's own settings, and the audit trail of changes."""
from __future__ import annotations

import pytest

from gateway.directory.models import AuditLog, School
from gateway.directory.schools import create_api_key

URL = "/api/v1/school"


async def assert_error(response, status: int, code: str, *fragments: str) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for fragment in fragments:
        assert fragment in body["error"]["message"]


async def test_get_school(client, auth, school):
    response = await client.get(URL, headers=auth)
    assert response.status == 200
    assert await response.json() == {
        "slug": "lincoln", "name": "Lincoln Elementary", "timezone": "UTC", "default_locale": "en",
        "default_region": "US", "sms_numbers": ["+14155550100", "+14155550101"], "quiet_hours": None,
    }


async def test_get_school_needs_a_key(client, school):
    await assert_error(await client.get(URL), 401, "unauthorized")


async def test_patch_changes_everything_at_once_and_is_audited(client, auth, school):
    response = await client.patch(URL, headers=auth, json={
        "name": "  Lincoln Middle  ", "timezone": "America/Los_Angeles", "default_locale": "es-MX",
        "sms_numbers": ["(415) 555-2671", "+1 415 555 0100", "+14155552671"],
        "quiet_hours": {"start": "21:30", "end": "07:00"},
    })
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body == {
        "slug": "lincoln", "name": "Lincoln Middle", "timezone": "America/Los_Angeles", "default_locale": "es_MX",
        "default_region": "US", "sms_numbers": ["+14155552671", "+14155550100"],
        "quiet_hours": {"start": "21:30", "end": "07:00"},
    }
    stored = await School.get(id=school.id)
    assert stored.name == "Lincoln Middle"
    assert stored.timezone == "America/Los_Angeles"
    assert stored.default_locale == "es_MX"
    assert stored.sms_numbers == ["+14155552671", "+14155550100"]  # E.164, duplicates dropped, order kept
    assert (stored.quiet_hours_start, stored.quiet_hours_end) == (21 * 60 + 30, 7 * 60)
    assert await (await client.get(URL, headers=auth)).json() == body

    entry = await AuditLog.get(school=school, action="school.update")
    assert entry.actor == "api-key:tests"
    assert entry.details == {"fields": ["default_locale", "name", "quiet_hours_end", "quiet_hours_start",
                                        "sms_numbers", "timezone"]}


async def test_patch_one_field_leaves_the_rest(client, auth, school):
    response = await client.patch(URL, headers=auth, json={"timezone": "Europe/Madrid"})
    assert response.status == 200
    stored = await School.get(id=school.id)
    assert stored.timezone == "Europe/Madrid"
    assert stored.name == "Lincoln Elementary" and stored.sms_numbers == ["+14155550100", "+14155550101"]
    assert (await AuditLog.get(school=school, action="school.update")).details == {"fields": ["timezone"]}


async def test_empty_patch_changes_nothing_and_writes_no_audit(client, auth, school):
    response = await client.patch(URL, headers=auth, json={})
    assert response.status == 200
    assert not await AuditLog.filter(school=school, action="school.update").exists()


async def test_quiet_hours_on_and_off(client, auth, school):
    response = await client.patch(URL, headers=auth, json={"quiet_hours": {"start": "20:00", "end": "06:45"}})
    assert (await response.json())["quiet_hours"] == {"start": "20:00", "end": "06:45"}
    stored = await School.get(id=school.id)
    assert (stored.quiet_hours_start, stored.quiet_hours_end) == (1200, 405)

    response = await client.patch(URL, headers=auth, json={"quiet_hours": None})
    assert response.status == 200
    assert (await response.json())["quiet_hours"] is None
    stored = await School.get(id=school.id)
    assert stored.quiet_hours_start == stored.quiet_hours_end  # equal bounds: no quiet hours
    assert await AuditLog.filter(school=school, action="school.update").count() == 2


async def test_default_region_reads_local_sms_numbers(client, auth, school):
    response = await client.patch(URL, headers=auth, json={"default_region": "gb", "sms_numbers": ["020 7946 0958"]})
    assert response.status == 200, await response.text()
    stored = await School.get(id=school.id)
    assert stored.default_region == "GB" and stored.sms_numbers == ["+442079460958"]


async def test_sms_numbers_can_be_emptied(client, auth, school):
    response = await client.patch(URL, headers=auth, json={"sms_numbers": []})
    assert response.status == 200
    assert (await School.get(id=school.id)).sms_numbers == []


BAD = [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"default_locale": "xx-invalid"}, "default_locale"),
    ({"default_locale": "en-nonsense"}, "default_locale"),
    ({"sms_numbers": ["+14155550100", "12345"]}, "sms_numbers[1]"),
    ({"sms_numbers": ["+14155550100", 4155550101]}, "sms_numbers[1]"),
    ({"sms_numbers": "+14155550100"}, "sms_numbers"),
    ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "21:00"}}, "quiet_hours.end"),
    ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours"),
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"timezone": None}, "timezone"),
    ({"default_locale": None}, "default_locale"),
    ({"default_region": None}, "default_region"),
    ({"sms_numbers": None}, "sms_numbers"),
    ({"default_region": "USA"}, "default_region"),
    ({"slug": "other"}, "slug"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize("patch,where", BAD, ids=[f"{i}-{w}" for i, (_, w) in enumerate(BAD)])
async def test_bad_patch_is_422_and_changes_nothing(client, auth, school, patch, where):
    before = await School.get(id=school.id)
    response = await client.patch(URL, headers=auth, json={"name": "Changed", **patch} if "name" not in patch else patch)
    await assert_error(response, 422, "invalid", where)
    after = await School.get(id=school.id)
    assert (after.name, after.timezone, after.default_locale, after.default_region, after.sms_numbers,
            after.quiet_hours_start, after.quiet_hours_end) == (
        before.name, before.timezone, before.default_locale, before.default_region, before.sms_numbers,
        before.quiet_hours_start, before.quiet_hours_end)
    assert not await AuditLog.filter(school=school, action="school.update").exists()


async def test_malformed_patch_body(client, auth, school):
    response = await client.patch(URL, headers={**auth, "Content-Type": "application/json"}, data=b"{")
    await assert_error(response, 400, "malformed_json")
    response = await client.patch(URL, headers=auth, json=["name"])
    await assert_error(response, 400, "malformed_json")


async def test_a_number_in_another_schools_pool_is_a_conflict(client, auth, school):
    """Inbound SMS finds its school by our number: one number can't serve two schools."""
    await create_api_key("roosevelt")
    other = await School.get(slug="roosevelt")
    other.sms_numbers = ["+14155550199"]
    await other.save()
    response = await client.patch(URL, headers=auth, json={"sms_numbers": ["+1 415 555 0199"]})
    await assert_error(response, 409, "conflict", "+14155550199")
    assert (await School.get(id=school.id)).sms_numbers == ["+14155550100", "+14155550101"]


async def test_patch_only_touches_the_keys_school(client, auth, school):
    other, other_key = await create_api_key("roosevelt")
    response = await client.patch(URL, headers={"Authorization": f"Bearer {other_key}"}, json={"name": "Roosevelt High"})
    assert (await response.json())["slug"] == "roosevelt"
    assert (await School.get(id=school.id)).name == "Lincoln Elementary"
    assert (await School.get(id=other.id)).name == "Roosevelt High"


async def test_unknown_routes_and_methods_answer_in_the_error_shape(client, auth, school):
    await assert_error(await client.get("/api/v1/nothing-here", headers=auth), 404, "not_found")
    await assert_error(await client.delete(URL, headers=auth), 405, "method_not_allowed")
