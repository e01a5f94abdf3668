"""/directory/roster: an admin uploads a roster, checks the preview, applies it; nobody else can, and nothing is
written before Apply."""
from __future__ import annotations

import re

import aiohttp
import pytest

from gateway.directory.models import AuditLog, Membership, RosterUpload, User
from gateway.directory.schools import create_api_key
from gateway.web import pages_roster
from tests.web.conftest import csrf_of

PLAIN_HEADER = "external_id,role,name,email,guardian_of"
ROSTER = "\n".join([
    PLAIN_HEADER,
    "t-rivera,staff,Ms. Rivera,rivera@school.example,",  # 2 update
    "s-new,student,New Kid,,",  # 3 create
    "g-new,guardian,New Parent,new@family.example,s-new",  # 4 create
    "g-bad,guardian,Bad Mail,not-an-address,",  # 5 bad e-mail
    "x-1,janitor,Who,,",  # 6 unknown role
    "s-dup,student,Twin A,,",  # 7 repeated id
    "s-dup,student,Twin B,,",  # 8 repeated id
    "s-odd,student,Odd,,s-new",  # 9 guardian_of on a student
]) + "\n"


def form(token: str | None, data: bytes, filename: str = "users.csv") -> aiohttp.FormData:
    body = aiohttp.FormData(quote_fields=False)  # the file name as browsers send it (not percent-encoded)
    if token is not None:
        body.add_field("csrf_token", token)
    body.add_field("file", data, filename=filename, content_type="text/csv")
    return body


async def admin_client(signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    return await signed_in("t-rivera")


async def upload(client, data: bytes, filename: str = "users.csv", *, path: str = "/directory/roster"):
    token = await csrf_of(client, "/directory/roster")
    return await client.post(path, data=form(token, data, filename), allow_redirects=False)


async def uploaded(client, data: bytes, filename: str = "users.csv") -> tuple[RosterUpload, str]:
    response = await upload(client, data, filename)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    row = await RosterUpload.get(id=int(location.rsplit("/", 1)[1]))
    page = await client.get(location)
    assert page.status == 200
    return row, await page.text()


def apply_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))


async def test_upload_preview_then_apply_the_valid_rows(people, signed_in):
    admin = await admin_client(signed_in)
    form_page = await (await admin.get("/directory/roster")).text()
    assert 'enctype="multipart/form-data"' in form_page and 'accept=".csv,text/csv"' in form_page
    assert 'aria-current="page">Upload a roster' in form_page
    users_before, members_before = await User.all().count(), await Membership.all().count()

    row, page = await uploaded(admin, ROSTER.encode())
    assert (row.format, row.rows, row.to_create, row.to_update, row.rejected) == ("plain", 8, 2, 1, 5)
    assert row.applied_at is None and row.file_name == "users.csv" and len(row.sha256) == 64
    assert (await User.all().count(), await Membership.all().count()) == (users_before, members_before)
    for line, fragment in [(5, "email: "), (6, "role: "), (7, "is on more than one line"), (8, "is on more than one line"),
                           (9, "only guardians have guardian_of")]:
        assert re.search(rf"<tr><td>{line}</td><td>[^<]*{re.escape(fragment)}", page), (line, fragment)
    assert "New Kid" in page and "New Parent" in page and "Ms. Rivera" in page
    assert "2</span> people would be created" in page and "5</span> rows are rejected" in page
    fields = apply_fields(page)
    assert re.fullmatch(r"[0-9a-f]{64}", fields["preview"])  # the preview the admin saw, pinned

    # Rejected rows are skipped only once the admin ticks the box.
    unconfirmed = await admin.post(f"/directory/roster/{row.id}/apply", data=fields)
    assert unconfirmed.status == 422 and "Tick the box" in await unconfirmed.text()
    assert await User.all().count() == users_before

    done = await admin.post(f"/directory/roster/{row.id}/apply", data={**fields, "skip_rejected": "yes"},
                            allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == f"/directory/roster/{row.id}"
    assert await User.all().count() == users_before + 2
    assert set(await Membership.filter(external_id__in=["s-new", "g-new", "g-bad", "x-1", "s-dup", "s-odd"])
               .values_list("external_id", flat=True)) == {"s-new", "g-new"}
    row = await RosterUpload.get(id=row.id)
    assert row.applied_at is not None
    assert row.result["created"] == 2 and row.result["updated"] == 1 and row.result["skipped"] == 5
    [audit] = await AuditLog.filter(action="roster.applied")
    assert audit.school_id == people.id and audit.details["created"] == 2 and audit.details["skipped"] == 5
    applied = await (await admin.get(f"/directory/roster/{row.id}")).text()
    assert "This roster was applied on" in applied and "2 people created" in applied and "5 rows skipped" in applied
    assert "Apply</button>" not in applied

    again = await admin.post(f"/directory/roster/{row.id}/apply", data={**fields, "skip_rejected": "yes"})
    assert again.status == 409 and "applied already" in await again.text()
    assert await User.all().count() == users_before + 2
    assert await AuditLog.filter(action="roster.applied").count() == 1
    listing = await (await admin.get("/directory/roster")).text()
    assert f'href="/directory/roster/{row.id}"' in listing and "Applied" in listing


async def test_a_clean_file_applies_without_the_checkbox(people, signed_in):
    admin = await admin_client(signed_in)
    row, page = await uploaded(admin, b"external_id,role,name\ns-1,student,Kid\n")
    assert 'name="skip_rejected"' not in page
    done = await admin.post(f"/directory/roster/{row.id}/apply", data=apply_fields(page), allow_redirects=False)
    assert done.status == 303 and await Membership.exists(external_id="s-1")


async def test_when_the_directory_changes_after_the_preview_nothing_is_applied(people, signed_in):
    admin = await admin_client(signed_in)
    row, page = await uploaded(admin, b"external_id,role,name\ns-1,student,Kid\ns-2,student,Other\n")
    from gateway.directory.user_input import UserIn
    from gateway.directory.users import upsert_users
    await upsert_users(people, [UserIn(external_id="s-2", role="guardian", name="Now a guardian")])
    response = await admin.post(f"/directory/roster/{row.id}/apply", data=apply_fields(page))
    assert response.status == 409 and "changed since you opened this preview" in await response.text()
    assert not await Membership.exists(external_id="s-1")
    assert (await RosterUpload.get(id=row.id)).applied_at is None


async def test_teachers_who_are_not_admins_and_families_get_403(people, signed_in):
    admin = await admin_client(signed_in)
    row, _ = await uploaded(admin, ROSTER.encode())
    for external_id, page in [("t-chen", "/conversations"), ("g-ana", "/inbox")]:
        other = await signed_in(external_id)
        token = await csrf_of(other, page)
        assert (await other.get("/directory/roster")).status == 403
        response = await other.post("/directory/roster", data=form(token, ROSTER.encode()), allow_redirects=False)
        assert response.status == 403
        assert (await other.get(f"/directory/roster/{row.id}")).status == 403
        response = await other.post(f"/directory/roster/{row.id}/apply",
                                    data={"csrf_token": token, "skip_rejected": "yes"})
        assert response.status == 403
    assert await RosterUpload.all().count() == 1
    assert (await RosterUpload.get(id=row.id)).applied_at is None


async def test_without_the_csrf_token_nothing_is_stored(people, signed_in):
    admin = await admin_client(signed_in)
    missing = await admin.post("/directory/roster", data=form(None, ROSTER.encode()), allow_redirects=False)
    assert missing.status == 403 and "This form has expired" in await missing.text()
    wrong = await admin.post("/directory/roster", data=form("0" * 64, ROSTER.encode()), allow_redirects=False)
    assert wrong.status == 403
    assert await RosterUpload.all().count() == 0
    row, page = await uploaded(admin, ROSTER.encode())
    fields = {k: v for k, v in apply_fields(page).items() if k != "csrf_token"}
    response = await admin.post(f"/directory/roster/{row.id}/apply", data={**fields, "skip_rejected": "yes"})
    assert response.status == 403 and (await RosterUpload.get(id=row.id)).applied_at is None


async def test_files_bigger_than_the_request_limit_are_accepted_up_to_the_roster_limit(people, signed_in, monkeypatch):
    admin = await admin_client(signed_in)
    # 1.5 MB, over the app's 1 MiB request limit: 15 people with 100,000 characters in a column we ignore.
    header = "sourcedId,status,enabledUser,role,givenName,familyName,identifier"
    lines = [header] + [f"t-{i},active,true,teacher,T,{i},{'x' * 100_000}" for i in range(15)]
    big = ("\n".join(lines) + "\n").encode()
    assert len(big) > 1024 * 1024
    row, page = await uploaded(admin, big)
    assert row.to_create == 15
    monkeypatch.setattr(pages_roster, "ROSTER_MAX_BYTES", 1024 * 1024)
    response = await upload(admin, big)
    assert response.status == 413 and "Too large" in await response.text()
    assert await RosterUpload.all().count() == 1


async def test_another_schools_upload_is_404(people, signed_in):
    admin = await admin_client(signed_in)
    other, _ = await create_api_key("other-school")
    someone = await User.create(name="Other Admin")
    theirs = await RosterUpload.create(school=other, uploaded_by=someone, file_name="theirs.csv", sha256="0" * 64,
                                       format="plain", data="external_id,role,name\ns-9,student,Nine\n", rows=1,
                                       to_create=1)
    assert (await admin.get(f"/directory/roster/{theirs.id}")).status == 404
    token = await csrf_of(admin, "/directory/roster")
    response = await admin.post(f"/directory/roster/{theirs.id}/apply",
                                data={"csrf_token": token, "preview": "0" * 64})
    assert response.status == 404
    assert (await admin.get("/directory/roster/999999")).status == 404
    assert not await Membership.exists(external_id="s-9")
    assert (await RosterUpload.get(id=theirs.id)).applied_at is None


@pytest.mark.parametrize("data", [
    b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", b"first,second\n1,2\n",
], ids=["empty", "binary", "other-csv"])
async def test_a_file_that_is_no_roster_is_a_clear_error(people, signed_in, data):
    admin = await admin_client(signed_in)
    response = await upload(admin, data, "photo.png")
    assert response.status == 422
    page = await response.text()
    assert 'role="alert"' in page and ("empty" in page or "not a CSV file" in page or "not a roster we know" in page)
    assert await RosterUpload.all().count() == 0


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "utf-8-sig"])
async def test_spreadsheet_encodings(people, signed_in, encoding):
    admin = await admin_client(signed_in)
    text = "external_id,role,name\r\nt-zoe,staff,Zoë Müller\r\n"
    row, page = await uploaded(admin, text.encode(encoding))
    assert row.to_create == 1 and "Zoë Müller" in page
    assert row.data == text


async def test_hostile_cells_are_text_and_formulas_are_rejected(people, signed_in):
    admin = await admin_client(signed_in)
    data = "\n".join([
        "external_id,role,name",
        's-1,student,"=HYPERLINK(""http://evil"",""x"")"',
        "s-2,student,+1+1",
        "s-3,student,@SUM(A1)",
        "s-4,student,<script>alert(1)</script>",
        "<b>x</b>,boss,Someone",
    ]).encode()
    row, page = await uploaded(admin, data, '<img src=x onerror=alert(1)>.csv')
    assert row.rejected == 4 and row.to_create == 1
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.csv" in page
    assert "<b>x</b>" not in page
    assert "href=\"http://evil" not in page and "=HYPERLINK(&#34;http://evil&#34;,&#34;x&#34;)" in page
    assert re.search(r"<td>3</td><td>name: &#39;\+1\+1&#39; starts with &#39;\+&#39; like a spreadsheet formula", page)


async def test_a_streamed_upload_handler_that_skips_read_upload_fails_loudly(people, signed_in, monkeypatch):
    from aiohttp import web

    async def forgetful(request):  # never calls read_upload: a bug the middleware turns into an error
        return web.Response(text="ok")

    monkeypatch.setattr(pages_roster, "upload", forgetful)
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    admin = await signed_in("t-rivera")  # routes are set up now, with the forgetful handler
    response = await admin.post("/directory/roster", data=form(None, ROSTER.encode()))
    assert response.status == 500


async def test_a_broken_multipart_body_is_a_400(people, signed_in):
    admin = await admin_client(signed_in)
    response = await admin.post("/directory/roster", data=b"--x\r\nnot a part",
                                headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert response.status == 400
    assert await RosterUpload.all().count() == 0
