"""The School Directory in a real browser: roster upload, student logins, invitations; admins only."""
from __future__ import annotations

from playwright.async_api import expect

from gateway.directory.models import Membership, User
from gateway.invites.models import Invitation
from tests.browser.conftest import sign_in
from tests.web.conftest import PASSWORD, give_password

ROSTER = (
    "external_id,role,name,email,phone,guardian_of,sections\n"
    "s-mia,student,Mia Nguyen,mia@students.example,,,5C\n"
    "s-leo,student,Leo Haddad,leo@students.example,,,5C\n"
    "g-linh,guardian,Linh Nguyen,linh@family.example,,s-mia,\n"
    "g-bad,guardian,Broken Address,not-an-email,,,\n"
)


async def test_an_admin_uploads_a_roster_enables_a_section_and_sends_invitations(people, serve, new_page, tmp_path):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    await give_password("t-rivera")
    base = await serve()
    page = await new_page()
    await sign_in(page, base, "rivera@school.example", PASSWORD)
    await page.click("nav.top >> text=School directory")
    await expect(page.locator("h1")).to_contain_text("People")

    roster = tmp_path / "users.csv"
    roster.write_text(ROSTER)
    await page.click("text=Upload a roster")
    await page.set_input_files("#roster-file", str(roster))
    await page.click("form[enctype] button[type=submit]")
    await expect(page.locator("main")).to_contain_text("An email address must have an @-sign")  # row 5, rejected
    assert not await User.exists(name="Mia Nguyen")  # nothing written before applying
    await page.check("#skip-rejected")
    await page.click("button:has-text('Apply')")
    await expect(page.locator("main")).to_contain_text("Applied")
    assert await User.exists(name="Mia Nguyen") and not await User.exists(name="Broken Address")

    await page.click("nav >> text=People")
    await page.select_option("#bulk-section", label="5C")
    await page.click("button:has-text('Enable logins')")
    await expect(page.locator("[role=status]")).to_contain_text("2 students' logins were changed.")
    assert await User.filter(name__in=["Mia Nguyen", "Leo Haddad"], login_enabled=True).count() == 2

    await page.click("nav >> text=Send invitations")
    await page.check("#audience-students")
    await page.check("#audience-guardians")
    await page.click("button[value=preview]")
    await expect(page.locator("main")).to_contain_text("would be invited")
    assert await Invitation.all().count() == 0  # the preview invites nobody
    await page.click("button[value=send]")
    await expect(page.locator("#state")).to_contain_text("Finished", timeout=20_000)  # the page refreshes itself
    await expect(page.locator("#count-invited")).to_contain_text("6")
    assert await Invitation.filter(state="invited").count() == 6  # 4 guardians + Mia and Leo


async def test_a_teacher_who_is_not_an_admin_is_refused_everywhere(people, serve, new_page):
    await give_password("t-chen")
    base = await serve(run_worker=False)
    page = await new_page()
    await sign_in(page, base, "chen@school.example", PASSWORD)
    assert await page.locator("nav.top >> text=School directory").count() == 0
    for path in ("/directory/people", "/directory/invitations", "/directory/roster", "/directory/people.csv"):
        response = await page.goto(base + path)
        assert response.status == 403, path
        await expect(page.locator("h1")).to_have_text("Not allowed")
