"""upsert_users at the size of a school district: 40,000 people in one call, then re-imported with changes."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from gateway.directory.models import (
    ChannelPreference,
    ContactPoint,
    Membership,
    Relationship,
    Role,
    SectionMember,
)
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from tests.conftest import directory_counts

ROWS = 40_000
CLASSES = 800
CLUBS = 50


def phone(n: int) -> str:
    return f"+1415{2_000_000 + n:07d}"


def roster(n: int) -> list[dict]:
    """n people as a district's roster: 5% staff, 35% guardians, 60% students.

    Every student has a guardian (guardians with a low number have two children); staff and students
    are in two sections each, staff and guardians have an e-mail and a phone.
    """
    staff, guardians = n // 20, n * 7 // 20
    students = n - staff - guardians
    people: list[dict] = []
    for i in range(staff):
        people.append({"external_id": f"t-{i:05d}", "role": "staff", "name": f"Teacher {i}",
                       "email": f"teacher{i}@school.example", "phone": phone(i), "is_admin": i % 100 == 0,
                       "sections": [f"Class {i % CLASSES:03d}", f"Class {(i + 1) % CLASSES:03d}"]})
    for j in range(students):
        person = {"external_id": f"s-{j:05d}", "role": "student", "name": f"Student {j}",
                  "sections": [f"Class {j % CLASSES:03d}", f"Club {j % CLUBS:02d}"]}
        if j % 3 == 0:
            person["login_enabled"] = True
        people.append(person)
    for k in range(guardians):
        wards = [f"s-{k:05d}"] + ([f"s-{k + guardians:05d}"] if k + guardians < students else [])
        person = {"external_id": f"g-{k:05d}", "role": "guardian", "name": f"Parent {k}",
                  "email": f"parent{k}@family.example", "phone": phone(staff + k), "guardian_of": wards}
        if k % 4 == 0:
            person["locale"] = "es"
        if k % 5 == 0:
            person["channel_preference"] = "both"
        people.append(person)
    return people


async def member(external_id: str) -> Membership:
    return await Membership.get(external_id=external_id).select_related("user")


async def contacts(external_id: str) -> dict[str, ContactPoint]:
    m = await Membership.get(external_id=external_id)
    return {c.kind.value: c for c in await ContactPoint.filter(user_id=m.user_id)}


async def sections_of(external_id: str) -> list[str]:
    m = await Membership.get(external_id=external_id)
    return sorted(await SectionMember.filter(user_id=m.user_id).values_list("section__name", flat=True))


async def wards_of(external_id: str) -> list[str]:
    m = await Membership.get(external_id=external_id)
    ids = await Relationship.filter(guardian_id=m.user_id).values_list("student_id", flat=True)
    return sorted(await Membership.filter(user_id__in=ids).values_list("external_id", flat=True))


async def test_a_district_roster_in_one_call_then_reimported_with_changes(db, school):
    people = roster(ROWS)
    staff, guardians = ROWS // 20, ROWS * 7 // 20
    students = ROWS - staff - guardians

    started = time.perf_counter()
    result = await upsert_users(school, [UserIn.model_validate(p) for p in people])
    first = time.perf_counter() - started
    assert (result.created, result.updated) == (ROWS, 0)
    assert await directory_counts() == {
        "users": ROWS, "memberships": ROWS, "contacts": 2 * (staff + guardians), "relationships": students,
        "sections": CLASSES + CLUBS, "section_members": 2 * (staff + students)}

    teacher = await member("t-00100")
    assert teacher.role is Role.STAFF and teacher.is_admin and teacher.user.login_enabled
    assert {k: c.address for k, c in (await contacts("t-00100")).items()} == {
        "email": "teacher100@school.example", "phone": phone(100)}
    assert await sections_of("t-00100") == ["Class 100", "Class 101"]
    assert (await member("t-00101")).is_admin is False
    kid, other_kid = await member("s-00003"), await member("s-00004")
    assert kid.user.login_enabled and not other_kid.user.login_enabled
    assert await sections_of("s-00003") == ["Class 003", "Club 03"]
    assert await contacts("s-00003") == {}
    parent = await member("g-00004")
    assert parent.user.locale == "es" and parent.user.channel_preference is ChannelPreference.EMAIL
    assert (await member("g-00005")).user.channel_preference is ChannelPreference.BOTH
    assert await wards_of("g-00004") == ["s-00004", f"s-{4 + guardians:05d}"]
    assert await wards_of(f"g-{guardians - 1:05d}") == [f"s-{guardians - 1:05d}"]
    assert await sections_of("g-00004") == []

    # The family of g-00005 texted STOP: re-importing the same number must keep that.
    opted = datetime(2025, 3, 1, tzinfo=timezone.utc)
    stopped = (await contacts("g-00005"))["phone"]
    await ContactPoint.filter(id=stopped.id).update(opted_out_at=opted)
    bounced_at = datetime(2025, 4, 1, tzinfo=timezone.utc)
    bouncing = (await contacts("g-00009"))["email"]
    await ContactPoint.filter(id=bouncing.id).update(bouncing_at=bounced_at)

    changed = {p["external_id"]: p for p in people}
    changed["g-00001"]["email"] = "parent1@new.example"
    changed["g-00002"]["phone"] = None
    changed["g-00006"]["guardian_of"] = ["s-00007"]
    changed["g-00008"] = {"external_id": "g-00008", "role": "guardian", "name": "Parent Eight"}  # nothing else given
    changed["g-00009"]["phone"] = "+1 (415) 555-0199"  # a new phone; the bouncing e-mail is unchanged
    changed["s-00003"]["sections"] = ["Class 003", "Robotics"]
    changed["t-00004"]["sections"] = []
    changed["t-00000"]["is_admin"] = False
    changed["t-00007"]["name"] = "Dr. Teacher 7"
    changed["s-00010"]["login_enabled"] = True
    changed["g-00011"]["channel_preference"] = "sms"
    del changed["g-00012"]["locale"]  # not given: stays "es"
    again = list(changed.values()) + [{"external_id": f"s-new-{n}", "role": "student", "name": f"New {n}",
                                       "sections": ["Robotics"]} for n in range(10)]
    before = await directory_counts()

    started = time.perf_counter()
    result = await upsert_users(school, [UserIn.model_validate(p) for p in again])
    second = time.perf_counter() - started
    print(f"\n{db.split(':')[0]}: {ROWS} rows created in {first:.1f} s, re-imported in {second:.1f} s")
    assert (result.created, result.updated) == (10, ROWS)

    after = await directory_counts()
    assert after == {**before, "users": ROWS + 10, "memberships": ROWS + 10, "contacts": before["contacts"] - 1,
                     "relationships": before["relationships"] - 1, "sections": before["sections"] + 1,
                     "section_members": before["section_members"] - 2 + 10}

    assert {k: c.address for k, c in (await contacts("g-00001")).items()} == {
        "email": "parent1@new.example", "phone": phone(staff + 1)}
    assert set(await contacts("g-00002")) == {"email"}
    kept = (await contacts("g-00005"))["phone"]
    assert (kept.id, kept.opted_out_at) == (stopped.id, opted)
    assert await wards_of("g-00006") == ["s-00007"]
    assert await wards_of("g-00007") == ["s-00007", f"s-{7 + guardians:05d}"]
    assert {k: c.address for k, c in (await contacts("g-00008")).items()} == {
        "email": "parent8@family.example", "phone": phone(staff + 8)}
    assert (await member("g-00008")).user.name == "Parent Eight"
    assert await wards_of("g-00008") == ["s-00008", f"s-{8 + guardians:05d}"]  # guardian_of not given: unchanged
    points = await contacts("g-00009")
    assert points["phone"].address == "+14155550199" and points["phone"].opted_out_at is None
    assert (points["email"].id, points["email"].bouncing_at) == (bouncing.id, bounced_at)
    assert await sections_of("s-00003") == ["Class 003", "Robotics"]
    assert await sections_of("t-00004") == []
    assert await sections_of("s-new-3") == ["Robotics"]
    assert (await member("t-00000")).is_admin is False
    assert (await member("t-00100")).is_admin is True
    assert (await member("t-00007")).user.name == "Dr. Teacher 7"
    assert (await member("s-00010")).user.login_enabled is True
    assert (await member("s-00011")).user.login_enabled is False
    assert (await member("g-00011")).user.channel_preference is ChannelPreference.SMS
    assert (await member("g-00012")).user.locale == "es"
    assert (await member("g-00013")).user.locale is None
