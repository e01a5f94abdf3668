"""Reading roster files: OneRoster 1.1 users.csv and our plain CSV, with errors that name the line."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.directory.models import (
    Membership,
    Relationship,
    Role,
    Section,
    SectionMember,
)
from gateway.directory.roster import RosterError, parse_roster, read_roster
from gateway.directory.users import upsert_users

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ONEROSTER_HEADER = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
                    "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password")


def oneroster(*rows: str) -> bytes:
    return ("\r\n".join([ONEROSTER_HEADER, *rows]) + "\r\n").encode()


def by_id(users):
    return {u.external_id: u for u in users}


def set_fields(user) -> dict:
    return user.model_dump(exclude_unset=True, mode="json")


def error_of(data: bytes) -> RosterError:
    with pytest.raises(RosterError) as info:
        parse_roster(data)
    return info.value


# --- OneRoster ---------------------------------------------------------------------------------------


def test_oneroster_file_with_bom():
    data = (FIXTURES / "oneroster_users.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    users = by_id(parse_roster(data))
    assert set(users) == {"t-100", "t-101", "a-1", "s-200", "s-201", "p-300", "p-301", "p-302"}  # s-202 is tobedeleted

    assert set_fields(users["t-100"]) == {
        "external_id": "t-100", "role": "staff", "name": "María Rivera", "email": "MRivera@Lincoln.Example",
        "phone": "(415) 555-2671"}
    assert set_fields(users["t-101"])["role"] == "staff"  # aide
    assert set_fields(users["a-1"]) == {"external_id": "a-1", "role": "staff", "name": "Pat Principal",
                                        "email": "principal@lincoln.example", "is_admin": True}
    # enabledUser is the account in the student information system; logins here are the admins' call.
    assert set_fields(users["s-200"]) == {"external_id": "s-200", "role": "student", "name": "Lucía García"}
    assert users["s-201"].login_enabled is None
    # The student names the parent (s-200 → p-300) or the parent names the students (p-301 → s-201, s-202):
    # both link, and the student about to be deleted is left out.
    assert set_fields(users["p-300"]) == {"external_id": "p-300", "role": "guardian", "name": "Ana García",
                                          "email": "ana@family.example", "phone": "+1 415 555 0142",
                                          "guardian_of": ["s-200"]}
    assert users["p-301"].guardian_of == ["s-201"]
    assert users["p-301"].phone == "415-555-0143"  # phone when there is no sms
    assert users["p-302"].role is Role.GUARDIAN and users["p-302"].guardian_of == ["s-201"]  # relative


def test_oneroster_line_numbers_count_the_header_and_skipped_rows():
    lines = {u.external_id: line for line, u in read_roster((FIXTURES / "oneroster_users.csv").read_bytes())}
    assert lines["t-100"] == 2
    assert lines["s-201"] == 6
    assert lines["p-300"] == 8  # line 7 (tobedeleted) is skipped, not renumbered


def test_oneroster_both_directions_without_duplicates():
    data = oneroster(
        "s-1,active,,true,org,student,,,Kid,One,,,,,,g-1,,",
        "g-1,active,,true,org,parent,,,Mum,One,,,,,,s-1,,",
        "s-2,active,,true,org,student,,,Kid,Two,,,,,,g-1,,",
    )
    assert by_id(parse_roster(data))["g-1"].guardian_of == ["s-1", "s-2"]


def test_oneroster_guardian_without_students_is_listed_with_none():
    users = by_id(parse_roster(oneroster("g-1,active,,true,org,guardian,,,Solo,Parent,,,solo@family.example,,,,,")))
    assert users["g-1"].guardian_of == []


def test_oneroster_windows_1252():
    row = "t-1,active,,true,org,teacher,,,Zoë,Müller,,,zoe@school.example,,,,,"
    data = (ONEROSTER_HEADER + "\r\n" + row + "\r\n").encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert parse_roster(data)[0].name == "Zoë Müller"


def test_oneroster_name_falls_back_to_username():
    users = parse_roster(oneroster("t-1,active,,true,org,teacher,jteacher,,,,,,,,,,,"))
    assert users[0].name == "jteacher"


@pytest.mark.parametrize("row,line,fragment", [
    ("x-1,active,,true,org,janitor,,,A,B,,,,,,,,", 3, "role"),
    (",active,,true,org,teacher,,,A,B,,,,,,,,", 3, "sourcedId"),
    ("x-1,active,,true,org,teacher,,,,,,,,,,,,", 3, "name"),
    ("x-1,active,,true,org,teacher,,,A,B,,,,,,,,,extra", 3, "more values than columns"),
])
def test_oneroster_errors_name_the_line(row, line, fragment):
    data = oneroster("t-1,active,,true,org,teacher,,,Fine,Row,,,,,,,,", row)
    error = error_of(data)
    assert error.line == line
    assert str(error).startswith(f"line {line}: ")
    assert fragment in str(error)


# --- plain CSV ---------------------------------------------------------------------------------------


PLAIN = """external_id,role,name,email,phone,locale,channel_preference,login_enabled,is_admin,guardian_of,sections
t-1,staff,Ms. Rivera,rivera@school.example,,,,,yes,,3A;Choir
s-1,student,Lucía,,,,,true,,,3A
s-2,student,Tom,,,,,,,,
g-1,guardian,"García, Ana",ana@family.example,415 555 0142,es-MX,sms,,,s-1; s-2,3A
"""


def test_plain_csv():
    users = by_id(parse_roster(PLAIN.encode()))
    assert set_fields(users["t-1"]) == {"external_id": "t-1", "role": "staff", "name": "Ms. Rivera",
                                        "email": "rivera@school.example", "is_admin": True, "sections": ["3A", "Choir"]}
    assert users["s-1"].login_enabled is True
    assert set_fields(users["s-2"]) == {"external_id": "s-2", "role": "student", "name": "Tom"}
    assert set_fields(users["g-1"]) == {
        "external_id": "g-1", "role": "guardian", "name": "García, Ana", "email": "ana@family.example",
        "phone": "415 555 0142", "locale": "es-MX", "channel_preference": "sms", "guardian_of": ["s-1", "s-2"],
        "sections": ["3A"]}


def test_plain_csv_with_only_the_required_columns_and_padded_header():
    users = parse_roster(b" external_id , role ,name\nt-1,staff,A\n")
    assert set_fields(users[0]) == {"external_id": "t-1", "role": "staff", "name": "A"}


def test_plain_csv_ignores_unnamed_empty_columns():
    assert len(parse_roster(b"external_id,role,name,,\nt-1,staff,A,,\n")) == 1


def test_plain_csv_line_numbers_skip_blank_lines_and_count_quoted_newlines():
    data = b'external_id,role,name\n\nt-1,staff,"Two\nLines"\n\nt-2,staff,B\nt-3,teacher,C\n'
    error = error_of(data)
    assert error.line == 7 and "role" in str(error)
    lines = [line for line, _ in read_roster(data[: data.index(b"t-3")])]
    assert lines == [3, 6]


@pytest.mark.parametrize("text,line,fragment", [
    ("external_id,role,name,colour\nt-1,staff,A,red\n", 1, "colour"),
    ("id,kind\n1,staff\n", 1, "external_id"),
    ("", 1, "OneRoster"),
    ("external_id,role,name,name\nt-1,staff,A,B\n", 1, "twice"),
    ("external_id,role,name\nt-1,staff,A\nt-2,boss,B\n", 3, "role"),
    ("external_id,role,name,login_enabled\nt-1,staff,A,sometimes\n", 2, "login_enabled"),
    ("external_id,role,name\nt-1,staff,A,extra\n", 2, "more values than columns"),
    ("external_id,role,name,channel_preference\nt-1,staff,A,fax\n", 2, "channel_preference"),
    ("external_id,role,name\nt-1,staff,\n", 2, "name"),
])
def test_plain_csv_errors_name_the_line(text, line, fragment):
    error = error_of(text.encode())
    assert error.line == line
    assert str(error).startswith(f"line {line}: ")
    assert fragment in str(error)


# --- into the directory ------------------------------------------------------------------------------


async def test_a_parsed_roster_upserts(school):
    users = parse_roster((FIXTURES / "oneroster_users.csv").read_bytes())
    result = await upsert_users(school, users)
    assert (result.created, result.updated) == (8, 0)
    admin = await Membership.get(school=school, external_id="a-1")
    assert admin.role is Role.STAFF and admin.is_admin
    p301 = await Membership.get(school=school, external_id="p-301")
    s201 = await Membership.get(school=school, external_id="s-201")
    assert await Relationship.filter(guardian_id=p301.user_id).values_list("student_id", flat=True) == [s201.user_id]
    assert not await Membership.exists(school=school, external_id="s-202")

    again = await upsert_users(school, users)
    assert (again.created, again.updated) == (0, 8)
    assert await Relationship.filter(school=school).count() == 3


async def test_plain_roster_creates_sections(school):
    await upsert_users(school, parse_roster(PLAIN.encode()))
    sections = {s.name for s in await Section.filter(school=school)}
    assert sections == {"3A", "Choir"}
    assert await SectionMember.filter(section__name="3A").count() == 3


async def test_reimporting_oneroster_drops_links_that_left_the_file(school):
    first = oneroster(
        "s-1,active,,true,org,student,,,Kid,One,,,,,,,,",
        "s-2,active,,true,org,student,,,Kid,Two,,,,,,,,",
        'g-1,active,,true,org,parent,,,Mum,One,,,,,,"s-1,s-2",,',
    )
    await upsert_users(school, parse_roster(first))
    g1 = await Membership.get(school=school, external_id="g-1")
    assert await Relationship.filter(guardian_id=g1.user_id).count() == 2
    second = oneroster(
        "s-1,active,,true,org,student,,,Kid,One,,,,,,,,",
        "s-2,tobedeleted,,true,org,student,,,Kid,Two,,,,,,,,",
        'g-1,active,,true,org,parent,,,Mum,One,,,,,,"s-1,s-2",,',
    )
    await upsert_users(school, parse_roster(second))
    s1 = await Membership.get(school=school, external_id="s-1")
    assert await Relationship.filter(guardian_id=g1.user_id).values_list("student_id", flat=True) == [s1.user_id]
