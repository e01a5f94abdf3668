"""PUT /api/v1/users and GET /api/v1/users/{external_id}: the directory through the admin API."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from gateway.directory.models import (
    ApiKey,
    AuditLog,
    ContactKind,
    ContactPoint,
    Membership,
    Relationship,
    Role,
    Section,
    SectionMember,
    User,
)
from gateway.directory.schools import create_api_key
from tests.conftest import directory_counts

URL = "/api/v1/users"


async def put(client, auth, users):
    return await client.put(URL, json={"users": users}, headers=auth)


async def member(external_id: str) -> Membership:
    return await Membership.get(external_id=external_id).select_related("user", "school")


async def contacts_of(external_id: str) -> dict[str, ContactPoint]:
    m = await Membership.get(external_id=external_id)
    return {c.kind.value: c for c in await ContactPoint.filter(user_id=m.user_id)}


async def assert_error(response, status: int, code: str, *fragments: str) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for fragment in fragments:
        assert fragment in body["error"]["message"]
    return body


FAMILY = [
    {"external_id": "t-1", "role": "staff", "name": "Ms. Rivera", "email": "Rivera@School.Example",
     "phone": "(415) 555-2671", "is_admin": True, "sections": ["3A"]},
    {"external_id": "s-1", "role": "student", "name": "Lucía", "sections": ["3A"], "login_enabled": True},
    {"external_id": "g-1", "role": "guardian", "name": "Ana García", "phone": "415 555 0142",
     "email": "ana@Bücher.Example", "locale": "es-MX", "channel_preference": "sms",
     "guardian_of": ["s-1"], "sections": ["3A", "Choir"]},
]


# --- creating --------------------------------------------------------------------------------------


async def test_put_creates_people_with_normalised_contacts(client, auth, school):
    response = await put(client, auth, FAMILY)
    assert response.status == 200, await response.text()
    assert await response.json() == {"created": 3, "updated": 0}

    teacher = await member("t-1")
    assert teacher.role is Role.STAFF and teacher.is_admin and teacher.school.id == school.id
    assert teacher.user.name == "Ms. Rivera"
    assert teacher.user.login_enabled is True
    assert {k: c.address for k, c in (await contacts_of("t-1")).items()} == {
        "phone": "+14155552671", "email": "rivera@school.example"}

    guardian = await member("g-1")
    assert guardian.role is Role.GUARDIAN and not guardian.is_admin
    assert guardian.user.locale == "es_MX"
    assert guardian.user.channel_preference.value == "sms"
    assert {k: c.address for k, c in (await contacts_of("g-1")).items()} == {
        "phone": "+14155550142", "email": "ana@xn--bcher-kva.example"}

    student = await member("s-1")
    assert student.user.login_enabled is True
    link = await Relationship.get(guardian_id=guardian.user_id)
    assert link.student_id == student.user_id and link.school_id == school.id  # linked within one request

    sections = {s.name: s for s in await Section.filter(school=school)}
    assert set(sections) == {"3A", "Choir"}  # created on demand, once
    in_3a = set(await SectionMember.filter(section=sections["3A"]).values_list("user_id", flat=True))
    assert in_3a == {teacher.user_id, student.user_id, guardian.user_id}
    assert await SectionMember.filter(section=sections["Choir"]).values_list("user_id", flat=True) == [guardian.user_id]

    audit = await AuditLog.filter(school=school, action="users.upsert").first()
    assert audit is not None and audit.details == {"created": 3, "updated": 0}


async def test_defaults_for_a_new_person(client, auth, school):
    response = await put(client, auth, [
        {"external_id": "s-2", "role": "student", "name": "Tom"},
        {"external_id": "g-2", "role": "guardian", "name": "Phone Only", "phone": "+14155550143"},
        {"external_id": "g-3", "role": "guardian", "name": "Mail Only", "email": "m@family.example"},
    ])
    assert response.status == 200
    assert (await member("s-2")).user.login_enabled is False  # students log in only when enabled
    assert (await member("g-2")).user.channel_preference.value == "sms"
    assert (await member("g-3")).user.channel_preference.value == "email"
    assert (await member("g-2")).user.login_enabled is True


async def test_a_student_of_an_earlier_request_can_be_linked(client, auth, school):
    assert (await put(client, auth, [{"external_id": "s-1", "role": "student", "name": "Lucía"}])).status == 200
    response = await put(client, auth, [
        {"external_id": "g-1", "role": "guardian", "name": "Ana", "guardian_of": ["s-1"]}])
    assert response.status == 200
    assert await response.json() == {"created": 1, "updated": 0}
    guardian, student = await member("g-1"), await member("s-1")
    assert await Relationship.filter(guardian_id=guardian.user_id, student_id=student.user_id).exists()


async def test_one_account_per_membership_and_external_ids_are_per_school(client, auth, school):
    other, other_key = await create_api_key("roosevelt")
    assert (await put(client, auth, [{"external_id": "x-1", "role": "staff", "name": "Lincoln person"}])).status == 200
    response = await put(client, {"Authorization": f"Bearer {other_key}"},
                         [{"external_id": "x-1", "role": "guardian", "name": "Roosevelt person"}])
    assert response.status == 200
    assert await response.json() == {"created": 1, "updated": 0}
    a = await Membership.get(school=school, external_id="x-1").select_related("user")
    b = await Membership.get(school=other, external_id="x-1").select_related("user")
    assert (a.role, a.user.name) == (Role.STAFF, "Lincoln person")
    assert (b.role, b.user.name) == (Role.GUARDIAN, "Roosevelt person")


# --- updating --------------------------------------------------------------------------------------


async def test_second_put_updates_and_counts(client, auth, school):
    assert (await put(client, auth, FAMILY)).status == 200
    response = await put(client, auth, [
        {"external_id": "g-1", "role": "guardian", "name": "Ana García López"},
        {"external_id": "s-9", "role": "student", "name": "New Kid"},
    ])
    assert response.status == 200
    assert await response.json() == {"created": 1, "updated": 1}
    assert (await member("g-1")).user.name == "Ana García López"
    assert await Membership.filter(school=school).count() == 4
    assert await User.all().count() == 4


async def test_partial_update_leaves_unspecified_fields_alone(client, auth, school):
    assert (await put(client, auth, FAMILY)).status == 200
    before = await member("g-1")
    response = await put(client, auth, [{"external_id": "g-1", "role": "guardian", "name": "Ana G."}])
    assert response.status == 200
    after = await member("g-1")
    assert after.user.name == "Ana G."
    assert after.user.locale == before.user.locale == "es_MX"
    assert after.user.channel_preference == before.user.channel_preference
    assert after.user.login_enabled == before.user.login_enabled
    assert {k: c.address for k, c in (await contacts_of("g-1")).items()} == {
        "phone": "+14155550142", "email": "ana@xn--bcher-kva.example"}
    assert await Relationship.filter(guardian_id=after.user_id).count() == 1
    sections = await SectionMember.filter(user_id=after.user_id).values_list("section__name", flat=True)
    assert sorted(sections) == ["3A", "Choir"]

    teacher = await put(client, auth, [{"external_id": "t-1", "role": "staff", "name": "Ms. Rivera"}])
    assert teacher.status == 200
    assert (await member("t-1")).is_admin is True  # is_admin not given: unchanged


async def test_update_replaces_lists_and_clears_with_null(client, auth, school):
    assert (await put(client, auth, FAMILY + [{"external_id": "s-2", "role": "student", "name": "Tom"}])).status == 200
    response = await put(client, auth, [
        {"external_id": "g-1", "role": "guardian", "name": "Ana", "guardian_of": ["s-2"], "sections": [],
         "email": None, "is_admin": False},
    ])
    # is_admin false on a guardian is simply "not an admin": accepted
    assert response.status == 200, await response.text()
    g = await member("g-1")
    s2 = await member("s-2")
    assert await Relationship.filter(guardian_id=g.user_id).values_list("student_id", flat=True) == [s2.user_id]
    assert await SectionMember.filter(user_id=g.user_id).count() == 0
    assert set(await contacts_of("g-1")) == {"phone"}
    assert await Section.filter(school=school).count() == 2  # sections stay; only membership changed


async def test_unchanged_address_keeps_its_opt_out(client, auth, school):
    assert (await put(client, auth, FAMILY)).status == 200
    phone = (await contacts_of("g-1"))["phone"]
    opted = datetime(2025, 3, 1, tzinfo=timezone.utc)
    await ContactPoint.filter(id=phone.id).update(opted_out_at=opted)

    # Same number written differently: still the same address, the opt-out stays.
    response = await put(client, auth, [
        {"external_id": "g-1", "role": "guardian", "name": "Ana", "phone": "+1 (415) 555-0142"}])
    assert response.status == 200
    kept = (await contacts_of("g-1"))["phone"]
    assert kept.id == phone.id and kept.opted_out_at == opted

    # A new number is a new contact point: no opt-out carried over.
    response = await put(client, auth, [
        {"external_id": "g-1", "role": "guardian", "name": "Ana", "phone": "+14155550199"}])
    assert response.status == 200
    points = await ContactPoint.filter(user_id=phone.user_id, kind=ContactKind.PHONE)
    assert [(p.address, p.opted_out_at) for p in points] == [("+14155550199", None)]


async def test_uses_the_schools_default_region(client, auth, school):
    school.default_region = "GB"
    await school.save()
    response = await put(client, auth, [{"external_id": "g-uk", "role": "guardian", "name": "Jo",
                                         "phone": "020 7946 0958"}])
    assert response.status == 200
    assert (await contacts_of("g-uk"))["phone"].address == "+442079460958"


# --- rejected input writes nothing -----------------------------------------------------------------


BAD_ROWS = [
    ({"phone": "12345"}, "users[2].phone"),
    ({"email": "not-an-address@"}, "users[2].email"),
    ({"favourite_colour": "blue"}, "users[2].favourite_colour"),
    ({"login_enabled": "sometimes"}, "users[2].login_enabled"),
    ({"phone": 4155550142}, "users[2].phone"),
    ({"guardian_of": ["nobody"]}, "users[2].guardian_of"),
    ({"channel_preference": "pigeon"}, "users[2].channel_preference"),
    ({"locale": "xx-invalid"}, "users[2].locale"),
    ({"name": "   "}, "users[2].name"),
]


@pytest.mark.parametrize("change,where", BAD_ROWS, ids=[w.split(".")[-1] + "-" + str(i) for i, (_, w) in enumerate(BAD_ROWS)])
async def test_a_bad_row_rejects_the_whole_request(client, auth, school, change, where):
    rows = [
        {"external_id": "s-1", "role": "student", "name": "Lucía", "sections": ["3A"]},
        {"external_id": "t-1", "role": "staff", "name": "Ms. Rivera", "email": "r@school.example"},
        {"external_id": "g-1", "role": "guardian", "name": "Ana", "guardian_of": ["s-1"], **change},
    ]
    before = await directory_counts()
    response = await put(client, auth, rows)
    await assert_error(response, 422, "invalid", where)
    assert await directory_counts() == before
    assert before["users"] == 0


@pytest.mark.parametrize("rows,where", [
    ([{"external_id": "s-1", "role": "student", "name": "A", "guardian_of": ["s-1"]}], "users[0].guardian_of"),
    ([{"external_id": "t-1", "role": "staff", "name": "A"}, {"external_id": "t-1", "role": "staff", "name": "B"}],
     "users[1].external_id"),
    ([{"external_id": "s-1", "role": "student", "name": "A", "is_admin": True}], "users[0].is_admin"),
    ([{"external_id": "s-1", "role": "parent", "name": "A"}], "users[0].role"),
    ([{"role": "staff", "name": "A"}], "users[0].external_id"),
    ([{"external_id": "g-1", "role": "guardian", "name": "A", "guardian_of": ["t-1"]},
      {"external_id": "t-1", "role": "staff", "name": "B"}], "users[0].guardian_of"),
], ids=["guardian_of-on-student", "duplicate-external-id", "admin-student", "unknown-role", "missing-external-id",
        "guardian-of-staff"])
async def test_other_bad_rows_write_nothing(client, auth, school, rows, where):
    before = await directory_counts()
    response = await put(client, auth, rows)
    await assert_error(response, 422, "invalid", where)
    assert await directory_counts() == before


async def test_a_role_change_is_rejected_and_writes_nothing(client, auth, school):
    assert (await put(client, auth, FAMILY)).status == 200
    before = await directory_counts()
    names_before = sorted(await User.all().values_list("name", flat=True))
    response = await put(client, auth, [
        {"external_id": "t-1", "role": "staff", "name": "Renamed"},
        {"external_id": "s-new", "role": "student", "name": "New"},
        {"external_id": "g-1", "role": "staff", "name": "Ana"},
    ])
    await assert_error(response, 422, "invalid", "users[2].role")
    assert await directory_counts() == before
    assert sorted(await User.all().values_list("name", flat=True)) == names_before


async def test_a_later_failure_rolls_back_earlier_rows(client, auth, school):
    """guardian_of is checked against the database: the failing row comes after rows that are fine."""
    before = await directory_counts()
    response = await put(client, auth, [
        {"external_id": "t-1", "role": "staff", "name": "A", "email": "a@school.example", "sections": ["X"]},
        {"external_id": "g-1", "role": "guardian", "name": "B", "guardian_of": ["s-missing"]},
    ])
    await assert_error(response, 422, "invalid", "users[1].guardian_of", "s-missing")
    assert await directory_counts() == before


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
async def test_malformed_json_is_400(client, auth, school, body):
    response = await client.put(URL, data=body, headers={**auth, "Content-Type": "application/json"})
    await assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize("payload", [[{"external_id": "a"}], "users", 3, None])
async def test_a_body_that_is_not_an_object_is_400(client, auth, school, payload):
    response = await client.put(URL, data=json.dumps(payload), headers={**auth, "Content-Type": "application/json"})
    await assert_error(response, 400, "malformed_json", "JSON object")


async def test_users_must_be_a_list(client, auth, school):
    response = await client.put(URL, json={"users": {"external_id": "x"}}, headers=auth)
    await assert_error(response, 422, "invalid", "users")
    response = await client.put(URL, json={}, headers=auth)
    await assert_error(response, 422, "invalid", "users")
    response = await client.put(URL, json={"users": [], "extra": 1}, headers=auth)
    await assert_error(response, 422, "invalid", "extra")


async def test_an_empty_list_changes_nothing(client, auth, school):
    response = await put(client, auth, [])
    assert response.status == 200
    assert await response.json() == {"created": 0, "updated": 0}


async def test_a_body_over_the_limit_is_413_and_writes_nothing(make_client, auth, school):
    client = await make_client(max_request_bytes=2048)
    users = [{"external_id": f"s-{i}", "role": "student", "name": "x" * 40} for i in range(60)]
    before = await directory_counts()
    response = await put(client, auth, users)
    await assert_error(response, 413, "too_large")
    assert await directory_counts() == before
    # Under the limit the same client is fine.
    response = await put(client, auth, users[:5])
    assert response.status == 200


# --- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer gk_not-a-real-key"},
    {"Authorization": "Bearer not-even-prefixed"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
], ids=["missing", "empty", "wrong", "unprefixed", "basic"])
async def test_requests_without_a_valid_key_are_401(client, school, headers):
    before = await directory_counts()
    response = await put(client, headers, [{"external_id": "t-1", "role": "staff", "name": "A"}])
    await assert_error(response, 401, "unauthorized")
    assert await directory_counts() == before
    response = await client.get(f"{URL}/t-1", headers=headers)
    await assert_error(response, 401, "unauthorized")


async def test_a_revoked_key_is_401(client, auth, api_key, school):
    assert (await client.get("/api/v1/school", headers=auth)).status == 200
    await ApiKey.filter(school=school, name="tests").update(revoked_at=datetime.now(timezone.utc))
    response = await put(client, auth, [{"external_id": "t-1", "role": "staff", "name": "A"}])
    await assert_error(response, 401, "unauthorized")
    assert await User.all().count() == 0


async def test_a_key_is_recorded_as_used(client, auth, school):
    assert (await client.get("/api/v1/school", headers=auth)).status == 200
    key = await ApiKey.get(school=school, name="tests")
    assert key.last_used_at is not None


# --- reading one person ----------------------------------------------------------------------------


async def test_get_user_shows_fields_contacts_and_state(client, auth, school):
    assert (await put(client, auth, FAMILY)).status == 200
    g = await member("g-1")
    joined = datetime(2025, 1, 15, 9, 30, tzinfo=timezone.utc)
    await User.filter(id=g.user_id).update(joined_at=joined)
    phone = (await contacts_of("g-1"))["phone"]
    await ContactPoint.filter(id=phone.id).update(opted_out_at=datetime(2025, 2, 1, tzinfo=timezone.utc))

    response = await client.get(f"{URL}/g-1", headers=auth)
    assert response.status == 200
    body = await response.json()
    assert body["external_id"] == "g-1"
    assert body["role"] == "guardian"
    assert body["is_admin"] is False
    assert body["name"] == "Ana García"
    assert body["locale"] == "es_MX"
    assert body["channel_preference"] == "sms"
    assert body["login_enabled"] is True
    assert datetime.fromisoformat(body["joined_at"]) == joined
    assert body["guardian_of"] == ["s-1"]
    assert body["sections"] == ["3A", "Choir"]
    points = {c["kind"]: c for c in body["contact_points"]}
    assert points["email"]["address"] == "ana@xn--bcher-kva.example"
    assert points["email"]["state"] == "ok"
    assert points["phone"]["address"] == "+14155550142"
    assert points["phone"]["state"] == "opted_out"
    assert datetime.fromisoformat(points["phone"]["opted_out_at"]) == datetime(2025, 2, 1, tzinfo=timezone.utc)

    student = await (await client.get(f"{URL}/s-1", headers=auth)).json()
    assert student["joined_at"] is None and student["contact_points"] == [] and student["role"] == "student"


async def test_get_user_never_shows_another_schools_person(client, auth, school):
    other, other_key = await create_api_key("roosevelt")
    other_auth = {"Authorization": f"Bearer {other_key}"}
    assert (await put(client, other_auth, [{"external_id": "r-1", "role": "staff", "name": "Roosevelt"}])).status == 200
    response = await client.get(f"{URL}/r-1", headers=auth)
    await assert_error(response, 404, "not_found", "r-1")
    assert (await client.get(f"{URL}/r-1", headers=other_auth)).status == 200


async def test_get_unknown_user_is_404(client, auth, school):
    await assert_error(await client.get(f"{URL}/nobody", headers=auth), 404, "not_found", "nobody")


async def test_get_user_named_like_the_openapi_document_still_needs_a_key(client, auth, school):
    response = await client.get(f"{URL}/openapi.json")
    await assert_error(response, 401, "unauthorized")
    response = await client.get(f"{URL}/openapi.json", headers=auth)
    await assert_error(response, 404, "not_found")


# --- robustness --------------------------------------------------------------------------------------


async def test_concurrent_puts_of_the_same_new_people_all_succeed(client, auth, school):
    """On PostgreSQL both requests see the people missing; the loser of the unique index is re-run."""
    users = [{"external_id": f"s-{i}", "role": "student", "name": "Kid", "sections": ["3A"]} for i in range(20)]
    users.append({"external_id": "g-1", "role": "guardian", "name": "Parent", "email": "p@family.example",
                  "guardian_of": ["s-0", "s-1"]})
    responses = await asyncio.gather(*(put(client, auth, users) for _ in range(3)))
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [200, 200, 200], bodies
    assert sorted(b["created"] for b in bodies) == [0, 0, 21]
    assert await directory_counts() == {"users": 21, "memberships": 21, "contacts": 1, "relationships": 2, "sections": 1,
                              "section_members": 20}


async def test_deeply_nested_json_is_400_not_500(client, auth, school):
    response = await client.put(URL, data=b"[" * 100_000, headers={**auth, "Content-Type": "application/json"})
    await assert_error(response, 400, "malformed_json")


async def test_401_says_how_to_authenticate(client, school):
    response = await client.get("/api/v1/school")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_external_ids_with_reserved_characters_round_trip(client, auth, school):
    assert (await put(client, auth, [{"external_id": "2024/a b?c", "role": "staff", "name": "A"}])).status == 200
    response = await client.get(f"{URL}/{quote('2024/a b?c', safe='')}", headers=auth)
    assert response.status == 200
    assert (await response.json())["external_id"] == "2024/a b?c"
