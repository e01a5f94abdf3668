"""The roster preview: every row judged (create, update or rejected with its line and reason), nothing written,
and applying its accepted rows writes exactly what it said."""
from __future__ import annotations

import time

import pytest

from gateway.directory.models import Membership, Relationship, User
from gateway.directory.roster import RosterError, decode, read_roster, read_roster_rows
from gateway.directory.roster_preview import preview_roster
from gateway.directory.users import upsert_users

ONEROSTER_HEADER = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
                    "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password")
PLAIN_HEADER = "external_id,role,name,email,phone,locale,guardian_of,is_admin"


def plain(*rows: str) -> bytes:
    return ("\n".join([PLAIN_HEADER, *rows]) + "\n").encode()


def reasons(preview) -> dict[int, str]:
    return {r.line: r.reason for r in preview.rejected}


MIXED = plain(
    "t-rivera,staff,Ms. Rivera Renamed,rivera@school.example,,,,",  # 2 update (renamed)
    "s-new,student,New Kid,,,,,",  # 3 create
    "g-new,guardian,New Parent,new@family.example,,es,s-new,",  # 4 create
    "g-bad,guardian,Bad Mail,not-an-address,,,,",  # 5 bad e-mail
    "x-1,janitor,Who,,,,,",  # 6 unknown role
    "s-dup,student,Twin A,,,,,",  # 7 repeated id
    "s-dup,student,Twin B,,,,,",  # 8 repeated id
    "s-odd,student,Odd,,,,s-new,",  # 9 guardian_of on a student
    "s-lucia,guardian,Lucía,,,,,",  # 10 role change
    "g-orphan,guardian,Orphan,,,,s-nobody,",  # 11 unknown student
    "s-adm,student,Admin Kid,,,,,true",  # 12 is_admin on a student
    "g-ana,guardian,Ana García,,+1 415 555 0142,xx-nonsense,s-lucia,",  # 13 bad locale
    "g-twin,guardian,Twin Parent,,,,s-dup,",  # 14 its student is rejected
)


async def test_preview_counts_with_lines_and_reasons_and_writes_nothing(people):
    users_before, members_before = await User.all().count(), await Membership.all().count()
    preview = await preview_roster(people, MIXED)
    assert preview.format == "plain"
    assert [p.external_id for p in preview.create] == ["s-new", "g-new"]
    assert [(p.external_id, p.line, p.old_name) for p in preview.update] == [("t-rivera", 2, "Ms. Rivera")]
    got = reasons(preview)
    assert sorted(got) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert got[5].startswith("email: ")
    assert got[6].startswith("role: ")
    assert "external_id: 's-dup' is on more than one line (lines 7, 8)" in got[7] and got[8] == got[7]
    assert got[9] == "guardian_of: only guardians have guardian_of"
    assert got[10] == "role: is student already; a role cannot change"
    assert got[11] == "guardian_of: no student with external_id 's-nobody' in this school"
    assert got[12] == "is_admin: only staff can be admins"
    assert got[13].startswith("locale: unknown locale")
    assert got[14] == "guardian_of: no student with external_id 's-dup' in this school (its line 7 is rejected)"
    assert preview.counts() == {"rows": 13, "to_create": 2, "to_update": 1, "rejected": 10}
    assert (await User.all().count(), await Membership.all().count()) == (users_before, members_before)
    assert (await Membership.get(external_id="t-rivera").prefetch_related("user")).user.name == "Ms. Rivera"


async def test_applying_the_accepted_rows_does_exactly_what_the_preview_said(people):
    preview = await preview_roster(people, MIXED)
    result = await upsert_users(people, preview.users)  # what the page's Apply does
    assert (result.created, result.updated) == (len(preview.create), len(preview.update)) == (2, 1)
    assert not await Membership.exists(external_id__in=["g-bad", "x-1", "s-dup", "s-odd", "g-orphan", "s-adm", "g-twin"])
    g_new = await Membership.get(external_id="g-new")
    s_new = await Membership.get(external_id="s-new")
    assert await Relationship.filter(guardian_id=g_new.user_id).values_list("student_id", flat=True) == [s_new.user_id]
    again = await preview_roster(people, MIXED)
    assert (len(again.create), len(again.update), len(again.rejected)) == (0, 3, 10)


async def test_a_guardian_of_a_student_already_in_the_school_is_fine_even_if_the_student_row_is_bad(people):
    preview = await preview_roster(people, plain("s-lucia,student,Lucía,bad@,,,,", "g-x,guardian,X,,,,s-lucia,"))
    assert list(reasons(preview)) == [2] and [p.external_id for p in preview.create] == ["g-x"]


async def test_formula_cells_are_rejected_and_phones_may_start_with_plus(school):
    preview = await preview_roster(school, plain(
        '"=HYPERLINK(""http://evil"",""x"")",staff,A,,,,,',
        "t-2,staff,+1+1,,,,,",
        "t-3,staff,@SUM(A1),,,,,",
        "t-4,staff,-2+3,,,,,",
        "t-5,staff,Fine,=x@evil.example,,,,",
        't-6,staff,"\t=1+2",,,,,',
        "t-7,staff,Real Person,,+1 415 555 0100,,,",
    ))
    got = reasons(preview)
    assert got[2].startswith("external_id: '=HYPERLINK(\"http://evil\",\"x\")' starts with '='")
    assert got[3].startswith("name: '+1+1' starts with '+'")
    assert got[4].startswith("name: '@SUM(A1)'") and got[5].startswith("name: '-2+3'")
    assert got[6].startswith("email: ") and got[7].startswith("name: '=1+2'")
    assert [p.external_id for p in preview.create] == ["t-7"]


async def test_oneroster_rows_are_all_judged(school):
    data = "\r\n".join([
        ONEROSTER_HEADER,
        "s-1,active,,true,org,student,,,Kid,One,,,,,,,,",
        "s-2,active,,maybe,org,student,,,Kid,Two,,,,,,,,",
        "x-1,active,,true,org,janitor,,,A,B,,,,,,,,",
        ",active,,true,org,teacher,,,A,B,,,,,,,,",
        "s-3,tobedeleted,,true,org,student,,,Kid,Three,,,,,,,,",
        "p-1,active,,true,org,parent,,,Mum,One,,,mum@family.example,,,s-1,,",
        "t-1,active,,true,org,teacher,,,A,B,,,,,,,,,extra",
    ]).encode()
    preview = await preview_roster(school, data)
    assert preview.format == "oneroster" and preview.left_out == 1
    # enabledUser is the student information system's account, not a login here: "maybe" is fine.
    assert [p.external_id for p in preview.create] == ["s-1", "s-2", "p-1"]
    got = reasons(preview)
    assert sorted(got) == [4, 5, 8]
    assert got[4].startswith("role") and got[5] == "sourcedId: missing"
    assert got[8] == "more values than columns"
    # The CLI's reader stops at the first bad line, with the same reason.
    with pytest.raises(RosterError) as info:
        read_roster(data)
    assert (info.value.line, info.value.message) == (4, got[4])


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("cp1252"),
    lambda text: text.encode("utf-16"),  # with a BOM, as Excel's "Unicode text" (little-endian on Windows)
    lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
    lambda text: text.encode("utf-8-sig"),
    lambda text: text.encode("utf-8"),
], ids=["cp1252", "utf-16", "utf-16-be", "utf-8-bom", "utf-8"])
def test_encodings(encode):
    text = "external_id,role,name\r\nt-1,staff,Zoë Müller-Île\r\n"
    assert decode(encode(text)) == text
    [(line, user)] = read_roster_rows(encode(text))
    assert line == 2 and user.name == "Zoë Müller-Île"


@pytest.mark.parametrize("separator", ["\t", ";"])
def test_tab_and_semicolon_separated(separator):
    text = separator.join(["external_id", "role", "name", "sections"]) + "\n" + separator.join(
        ["t-1", "staff", "García, Ana", '"3A; Choir"']) + "\n"
    [(_, user)] = read_roster_rows(text.encode("utf-16"))
    assert (user.name, user.sections) == ("García, Ana", ["3A", "Choir"])


@pytest.mark.parametrize("data,kind", [
    (b"", "empty"), (b"\r\n \r\n", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"PK\x03\x04\x14\x00\x06\x00", "binary"), (b"first,second\n1,2\n", "not_roster"),
    (b"external_id,role,name,shoe_size\n", "header"),
], ids=["empty", "blank", "png", "xlsx", "other-csv", "unknown-column"])
def test_files_that_are_no_roster(data, kind):
    with pytest.raises(RosterError) as info:
        read_roster_rows(data)
    assert info.value.kind == kind and info.value.line == 1


def oneroster_file(n: int, *, bad_every: int = 0) -> bytes:
    """n people: a third students, a third their parents (linked), a third teachers with e-mail."""
    lines = [ONEROSTER_HEADER]
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(f"x-{i},active,,true,org,janitor,,,Bad,Role{i},,,,,,,,")
        elif i % 3 == 0:
            lines.append(f"s-{i},active,,true,org,student,,,Kid{i},Family{i},,,,,,,05,")
        elif i % 3 == 1:
            lines.append(f"g-{i},active,,true,org,parent,,,Parent{i},Family{i},,,parent{i}@family.example,"
                         f"+1 415 555 {i % 10000:04d},,s-{i - 1},,")
        else:
            lines.append(f"t-{i},active,,true,org,teacher,,,Teacher{i},Staff{i},,,teacher{i}@school.example,,,,,")
    return ("\r\n".join(lines) + "\r\n").encode()


async def test_fifty_thousand_rows_preview_quickly(people):
    data = oneroster_file(50_000, bad_every=1000)
    await upsert_users(people, [u for _, u in read_roster_rows(oneroster_file(30))[:6]])  # some are updates
    started = time.perf_counter()
    preview = await preview_roster(people, data)
    elapsed = time.perf_counter() - started
    assert preview.counts() == {"rows": 50_000, "to_create": 49_944, "to_update": 6, "rejected": 50}
    assert preview.rejected[0].line == 1001 and preview.rejected[0].reason.startswith("role: unknown OneRoster role")
    assert len(preview.users) == 49_950
    assert elapsed < 10, elapsed


async def test_an_upload_never_switches_an_existing_students_login(school):
    from gateway.directory.models import Membership, User
    from gateway.directory.user_input import UserIn
    from gateway.directory.users import upsert_users

    await upsert_users(school, [UserIn(external_id="s-1", role="student", name="Kid One", login_enabled=False),
                                UserIn(external_id="s-2", role="student", name="Kid Two", login_enabled=True)])
    data = ("external_id,role,name,login_enabled\ns-1,student,Kid One,true\ns-2,student,Kid Two,false\n"
            "s-3,student,Kid Three,true\n").encode()
    preview = await preview_roster(school, data)
    await upsert_users(school, preview.users)
    enabled = {m.external_id: (await User.get(id=m.user_id)).login_enabled for m in await Membership.filter(school=school)}
    assert enabled == {"s-1": False, "s-2": True, "s-3": True}  # only the new student takes the file's value
