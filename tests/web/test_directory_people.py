"""/directory/people: the School Directory for staff admins: who is who, who joined, student logins."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone

from gateway.directory.models import AuditLog, ContactPoint, Membership, School, Section, User
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.web.sessions import Session
from tests.web.conftest import csrf_of


async def uid(external_id: str) -> int:
    return (await Membership.get(external_id=external_id)).user_id


async def admin(signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    return await signed_in("t-rivera")


def rows(html: str) -> list[str]:
    """The external ids listed, in order."""
    return re.findall(r'<span class="meta">([a-z]-[a-z]+|p\d+)</span></td>', html)


async def test_an_admin_sees_everyone_with_sections_family_joined_and_contact_states(people, signed_in):
    await User.filter(id=await uid("g-john")).update(joined_at=datetime(2026, 9, 1, tzinfo=timezone.utc))
    await ContactPoint.filter(address="+14155550142").update(opted_out_at=datetime.now(timezone.utc))
    page = await (await (await admin(signed_in)).get("/directory/people")).text()
    assert rows(page) == ["g-ana", "g-john", "g-wei", "s-lucia", "t-chen", "t-rivera", "s-tom"]  # by name
    ana = page[page.index('id="u%d"' % await uid("g-ana")):]
    ana = ana[:ana.index("</tr>")]
    assert "Lucía" in ana and "+14155550142" in ana and "Opted out" in ana and "Not joined yet" in ana
    john = page[page.index('id="u%d"' % await uid("g-john")):]
    assert "Joined" in john[:john.index("</tr>")] and "Tom" in john[:john.index("</tr>")]
    tom = page[page.index('id="u%d"' % await uid("s-tom")):]
    tom = tom[:tom.index("</tr>")]
    assert "3A, 4B" in tom and "John Smith, Li Wei" in tom and "Not enabled" in tom


async def test_filters_by_name_role_section_joined_and_student_login(people, signed_in):
    client = await admin(signed_in)
    await User.filter(id=await uid("g-john")).update(joined_at=datetime.now(timezone.utc))
    await User.filter(id=await uid("s-tom")).update(login_enabled=True)
    section_4b = (await Section.get(name="4B")).id

    async def listed(query: str) -> list[str]:
        return rows(await (await client.get("/directory/people?" + query)).text())

    assert await listed("q=GARC") == ["g-ana"]
    assert await listed("q=%25") == []  # LIKE wildcards are literal
    assert await listed("role=student") == ["s-lucia", "s-tom"]
    assert await listed(f"section={section_4b}") == ["g-john", "t-chen", "s-tom"]
    assert await listed("joined=yes") == ["g-john", "t-rivera"]  # the admin joined by signing in
    assert "g-john" not in await listed("joined=no")
    assert await listed("login=enabled") == ["s-tom"]
    assert await listed("login=disabled") == ["s-lucia"]
    assert await listed("role=bogus&joined=maybe&section=abc&page=-1") == await listed("")


async def test_pages_of_fifty_in_name_order(people, signed_in):
    await upsert_users(people, [UserIn(external_id=f"p{i:03d}", role="guardian", name=f"Parent {i:03d}")
                                for i in range(120)])
    client = await admin(signed_in)
    first = await (await client.get("/directory/people?role=guardian")).text()
    assert "123 people" in first and "Page 1 of 3" in first and len(rows(first)) == 50
    last = await (await client.get("/directory/people?role=guardian&page=3")).text()
    assert rows(last) == [f"p{i:03d}" for i in range(97, 120)]  # after Ana, John and Li
    assert 'rel="prev"' in last and 'rel="next"' not in last


async def test_enabling_a_whole_section_is_audited_and_disabling_one_signs_them_out(people, signed_in):
    client = await admin(signed_in)
    await User.filter(id__in=[await uid("s-lucia"), await uid("s-tom")]).update(login_enabled=False)
    section_3a = (await Section.get(name="3A")).id
    token = await csrf_of(client, "/directory/people")
    response = await client.post("/directory/sections/login", data={
        "csrf_token": token, "section": str(section_3a), "enabled": "1", "back": "/directory/people?role=student"},
        allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/directory/people?role=student&changed=2"
    assert await User.filter(id__in=[await uid("s-lucia"), await uid("s-tom")], login_enabled=True).count() == 2
    audit = await AuditLog.filter(action="student.login_enabled").order_by("target").values_list("target", "details")
    assert audit == [("user:s-lucia", {"section": "3A"}), ("user:s-tom", {"section": "3A"})]
    await Session.create(key_hash="x" * 64, user_id=await uid("s-tom"), csrf_secret="s", last_seen_at=datetime.now(timezone.utc),
                         expires_at=datetime(2100, 1, 1, tzinfo=timezone.utc))
    response = await client.post(f"/directory/people/{await uid('s-tom')}/login",
                                 data={"csrf_token": token, "enabled": "0", "back": "https://evil.example/"},
                                 allow_redirects=False)
    assert response.headers["Location"] == "/directory/people?changed=1"
    assert not (await User.get(id=await uid("s-tom"))).login_enabled
    assert await Session.filter(user_id=await uid("s-tom")).count() == 0
    assert await AuditLog.filter(action="student.login_disabled", target="user:s-tom").exists()


async def test_only_students_of_this_school_can_be_switched(people, signed_in):
    client = await admin(signed_in)
    token = await csrf_of(client, "/directory/people")
    guardian = await client.post(f"/directory/people/{await uid('g-ana')}/login", data={"csrf_token": token, "enabled": "0"})
    assert guardian.status == 404 and (await User.get(id=await uid("g-ana"))).login_enabled  # guardians may sign in
    other = await School.create(slug="other", name="Other School")
    await upsert_users(other, [UserIn(external_id="s-x", role="student", name="Xavier", sections=["9Z"])])
    foreign_student = await client.post(f"/directory/people/{await uid('s-x')}/login", data={"csrf_token": token, "enabled": "1"})
    foreign_section = await client.post("/directory/sections/login", data={
        "csrf_token": token, "section": str((await Section.get(name="9Z")).id), "enabled": "1"})
    assert foreign_student.status == foreign_section.status == 404
    assert not (await User.get(id=await uid("s-x"))).login_enabled
    assert await AuditLog.filter(action__startswith="student.").count() == 0


async def test_teachers_who_are_not_admins_and_families_get_403_everywhere(people, signed_in):
    section_3a = (await Section.get(name="3A")).id
    for who in ("t-chen", "g-ana"):
        client = await signed_in(who)
        token = await csrf_of(client, "/preferences")
        for path in ("/directory", "/directory/people", "/directory/people.csv", "/directory/people?role=student"):
            assert (await client.get(path)).status == 403, (who, path)
        posts = [(f"/directory/people/{await uid('s-tom')}/login", {"enabled": "1"}),
                 ("/directory/sections/login", {"section": str(section_3a), "enabled": "1"})]
        for path, data in posts:
            assert (await client.post(path, data={"csrf_token": token, **data})).status == 403, (who, path)
    assert await User.filter(id__in=[await uid("s-lucia"), await uid("s-tom")], login_enabled=True).count() == 0
    assert "School directory" not in await (await (await signed_in("t-chen")).get("/conversations")).text()


async def test_forms_without_csrf_change_nothing(people, signed_in):
    client = await admin(signed_in)
    response = await client.post(f"/directory/people/{await uid('s-tom')}/login", data={"enabled": "1"})
    assert response.status == 403 and not (await User.get(id=await uid("s-tom"))).login_enabled


async def test_the_spreadsheet_export_neutralizes_formulas(people, signed_in):
    await upsert_users(people, [UserIn(external_id="p-evil", role="guardian", name='=HYPERLINK("http://x","y")')])
    client = await admin(signed_in)
    page = await (await client.get("/directory/people")).text()
    assert "=HYPERLINK(&#34;http://x&#34;,&#34;y&#34;)" in page or "=HYPERLINK(&quot;" in page
    response = await client.get("/directory/people.csv?role=guardian")
    assert response.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert sorted(r["external_id"] for r in table) == ["g-ana", "g-john", "g-wei", "p-evil"]
    evil = next(r for r in table if r["external_id"] == "p-evil")
    assert evil["name"] == "'=HYPERLINK(\"http://x\",\"y\")"
    ana = next(r for r in table if r["external_id"] == "g-ana")
    assert ana["phone"] == "'+14155550142" and ana["email"] == "ana@family.example"


async def test_search_folds_every_letter_and_the_section_filter_stays_in_the_school(people, signed_in):
    await upsert_users(people, [UserIn(external_id="p-elodie", role="guardian", name="Élodie Weiß")])
    other = await School.create(slug="other", name="Other School")
    await upsert_users(other, [UserIn(external_id="s-x", role="student", name="Xavier", sections=["9Z"])])
    client = await admin(signed_in)
    for typed in ("élodie", "ÉLODIE", "weiß"):
        assert rows(await (await client.get(f"/directory/people?q={typed}")).text()) == ["p-elodie"], typed
    foreign = (await Section.get(name="9Z")).id
    assert rows(await (await client.get(f"/directory/people?section={foreign}")).text()) == []


async def test_disabling_a_student_stops_an_invitation_waiting_in_the_outbox(people, signed_in, settings):
    from gateway.channels.dev import DevEmailChannel, DevSmsChannel
    from gateway.invites.campaigns import create_campaign, run_campaign
    from gateway.threads.dispatcher import Dispatcher
    from gateway.threads.models import Delivery

    await ContactPoint.create(user_id=await uid("s-tom"), kind="email", address="tom@students.example")
    await User.filter(id=await uid("s-tom")).update(login_enabled=True)
    campaign = await create_campaign(people, ["students"], dry_run=False, actor="tests")
    await run_campaign(campaign.id, settings.secret_key)
    [waiting] = await Delivery.filter(recipient_id=await uid("s-tom"))
    client = await admin(signed_in)
    token = await csrf_of(client, "/directory/people")
    await client.post(f"/directory/people/{await uid('s-tom')}/login", data={"csrf_token": token, "enabled": "0"})
    await Dispatcher(settings, {"sms": DevSmsChannel(), "email": DevEmailChannel()}).drain()
    waiting = await Delivery.get(id=waiting.id)
    assert (waiting.status.value, waiting.error_reason) == ("suppressed", "the link was not sent: used")
