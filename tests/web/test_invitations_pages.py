"""/directory/invitations: staff admins preview, send and follow invitation campaigns; nobody else may."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from gateway.directory.models import Membership, Role, User
from gateway.directory.schools import create_api_key
from gateway.invites.campaigns import create_campaign, run_campaign
from gateway.invites.models import CampaignState, Invitation, InvitationCampaign, InvitationState, SkipReason
from gateway.invites.tokens import LoginToken
from gateway.threads.models import Delivery
from gateway.web import keys
from gateway.web.api_invites import CAMPAIGN_RUNNER
from tests.web.conftest import csrf_of

URL = "/directory/invitations"
REFRESH = '<meta http-equiv="refresh" content="2">'


async def admin(signed_in):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    return await signed_in("t-rivera")


async def post(client, *audiences, action="preview", csrf=True, **fields):
    data = [("action", action), *(("audience", a) for a in audiences), *fields.items()]
    if csrf:
        data.append(("csrf_token", await csrf_of(client, URL)))
    return await client.post(URL, data=data, allow_redirects=False)


def count(page: str, name: str) -> int:
    """The number in the row `id="count-<name>"` (or `progress-<name>`) of a counts table."""
    found = re.search(rf'<tr id="{name}">.*?<td>(?:<span[^>]*>)?(\d+)', page)
    assert found, name
    return int(found.group(1))


async def nothing_invited() -> None:
    assert await Invitation.all().count() == 0
    assert await Delivery.all().count() == 0
    assert await LoginToken.all().count() == 0


async def nothing_written() -> None:
    assert await InvitationCampaign.all().count() == 0
    await nothing_invited()


async def test_the_form_explains_who_is_invited(people, signed_in):
    browser = await admin(signed_in)
    response = await browser.get(URL)
    assert response.status == 200
    page = await response.text()
    assert "<legend>Who to invite</legend>" in page
    for audience in ("staff", "guardians", "students"):
        assert f'<input type="checkbox" id="audience-{audience}" name="audience" value="{audience}"' in page
        assert f'<label for="audience-{audience}">' in page
    assert "Only students whose login the school has enabled" in page
    assert "already joined are never invited" in page
    assert 'aria-current="page">Send invitations</a>' in page  # the directory's navigation
    assert "No invitations have been sent yet." in page


async def test_the_preview_counts_and_invites_nobody(people, signed_in):
    browser = await admin(signed_in)
    response = await post(browser, "guardians")
    assert response.status == 200, await response.text()
    page = await response.text()
    assert "3 people would be invited" in page and "Nothing has been sent yet." in page
    assert (count(page, "count-invited"), count(page, "count-joined"), count(page, "count-no-contact")) == (3, 0, 0)
    assert '<input type="hidden" name="audience" value="guardians">' in page
    assert re.search(r'<input type="hidden" name="submission" value="[A-Za-z0-9_-]{16,}">', page)
    assert 'name="action" value="send"' in page and 'name="action" value="change"' in page
    await nothing_invited()
    [preview] = await InvitationCampaign.all()
    assert preview.dry_run and preview.state is CampaignState.DONE and preview.invited == 3

    await User.filter(memberships__external_id="g-ana").update(joined_at=datetime.now(timezone.utc))
    page = await (await post(browser, "guardians")).text()
    assert (count(page, "count-invited"), count(page, "count-joined")) == (2, 1)

    page = await (await post(browser, "staff", "guardians", "students")).text()
    # Ms. Rivera is signed in (joined); the students' logins are not enabled.
    assert (count(page, "count-invited"), count(page, "count-joined"), count(page, "count-not-enabled"),
            count(page, "count-cooldown"), count(page, "count-cap")) == (3, 2, 2, 0, 0)
    await nothing_invited()
    assert "No invitations have been sent yet." in await (await browser.get(URL)).text()  # previews are not listed

    change = await post(browser, "staff", "students", action="change")
    assert change.status == 200
    page = await change.text()
    assert 'value="staff" aria-describedby="audience-staff-hint" checked' in page
    assert 'value="guardians" aria-describedby="audience-guardians-hint">' in page
    assert await InvitationCampaign.all().count() == 3


async def test_nobody_to_invite_offers_no_send_button(people, signed_in):
    browser = await admin(signed_in)
    page = await (await post(browser, "students")).text()
    assert count(page, "count-invited") == 0 and count(page, "count-not-enabled") == 2
    assert 'value="send"' not in page and "Nobody would be invited" in page


async def test_sending_invites_and_the_campaign_page_shows_the_counts(people, signed_in):
    browser = await admin(signed_in)
    rivera = await User.get(memberships__external_id="t-rivera")
    response = await post(browser, "guardians", action="send", submission="s" * 22)
    assert response.status == 303, await response.text()
    campaign = await InvitationCampaign.get(dry_run=False)
    assert response.headers["Location"] == f"{URL}/{campaign.id}"
    assert campaign.created_by == f"user:{rivera.id}" and campaign.audiences == ["guardians"]
    await browser.app[CAMPAIGN_RUNNER].wait_idle()

    assert await Invitation.filter(campaign_id=campaign.id, state=InvitationState.INVITED).count() == 3
    assert await Delivery.all().count() == 3 and await LoginToken.all().count() == 3
    response = await browser.get(f"{URL}/{campaign.id}")
    assert response.status == 200
    page = await response.text()
    assert "Finished" in page and REFRESH not in page and "Ms. Rivera" in page
    assert "3 people invited" in page
    assert (count(page, "count-targeted"), count(page, "count-invited"), count(page, "count-joined"),
            count(page, "count-cooldown")) == (3, 3, 0, 0)
    assert (count(page, "progress-queued"), count(page, "progress-sent"), count(page, "progress-failed")) == (3, 0, 0)

    listing = await (await browser.get(URL)).text()
    assert f'href="{URL}/{campaign.id}"' in listing and "Run by Ms. Rivera" in listing
    assert "3 people invited" in listing and "Guardians" in listing

    # Again: everyone was just invited (cooldown), nobody twice.
    preview = await (await post(browser, "guardians")).text()
    assert (count(preview, "count-invited"), count(preview, "count-cooldown")) == (0, 3)
    response = await post(browser, "guardians", action="send")
    assert response.status == 303
    await browser.app[CAMPAIGN_RUNNER].wait_idle()
    second = await InvitationCampaign.filter(dry_run=False).order_by("-id").first()
    assert second.id != campaign.id
    page = await (await browser.get(f"{URL}/{second.id}")).text()
    assert (count(page, "count-invited"), count(page, "count-cooldown")) == (0, 3)
    assert await Invitation.filter(campaign_id=second.id, skip_reason=SkipReason.COOLDOWN).count() == 3
    assert await Delivery.all().count() == 3 and await LoginToken.all().count() == 3
    listing = await (await browser.get(URL)).text()
    assert listing.index(f'href="{URL}/{second.id}"') < listing.index(f'href="{URL}/{campaign.id}"')  # newest first


async def test_a_campaign_in_progress_refreshes_itself(people, signed_in):
    browser = await admin(signed_in)
    rivera = await User.get(memberships__external_id="t-rivera")
    campaign = await create_campaign(people, ["staff"], dry_run=False, actor=f"user:{rivera.id}")
    page = await (await browser.get(f"{URL}/{campaign.id}")).text()
    assert REFRESH in page and "Waiting to start" in page and 'role="status"' in page
    await run_campaign(campaign.id, browser.app[keys.SETTINGS].secret_key)
    page = await (await browser.get(f"{URL}/{campaign.id}")).text()
    assert REFRESH not in page and "Finished" in page
    assert (count(page, "count-invited"), count(page, "count-joined")) == (1, 1)


async def test_no_audience_is_a_422_and_writes_nothing(people, signed_in):
    browser = await admin(signed_in)
    for action in ("preview", "send"):
        response = await post(browser, action=action)
        assert response.status == 422
        page = await response.text()
        assert '<p class="card error" role="alert" id="audience-error">Choose who to invite.</p>' in page
    response = await post(browser, "staff", "parents", action="send")
    assert response.status == 422
    await nothing_written()


async def test_a_form_without_its_csrf_token_is_refused(people, signed_in):
    browser = await admin(signed_in)
    for action in ("preview", "send"):
        response = await post(browser, "guardians", action=action, csrf=False)
        assert response.status == 403
    response = await post(browser, "guardians", action="send", csrf=False, csrf_token="0" * 64)
    assert response.status == 403
    await nothing_written()


async def test_teachers_who_are_not_admins_and_families_get_403(people, signed_in):
    campaign = await create_campaign(people, ["staff"], dry_run=False, actor="api-key:tests")
    for external_id, home in (("t-chen", "/conversations"), ("g-ana", "/inbox")):
        browser = await signed_in(external_id)
        assert (await browser.get(URL)).status == 403
        assert (await browser.get(f"{URL}/{campaign.id}")).status == 403
        token = await csrf_of(browser, home)
        for action in ("preview", "send", "change"):
            response = await browser.post(URL, data={"csrf_token": token, "action": action, "audience": "guardians"},
                                          allow_redirects=False)
            assert response.status == 403
    assert await InvitationCampaign.all().count() == 1
    await nothing_invited()


async def test_another_schools_campaign_and_junk_are_not_found(people, signed_in):
    browser = await admin(signed_in)
    other, _ = await create_api_key("roosevelt")
    theirs = await create_campaign(other, ["staff"], dry_run=False, actor="api-key:theirs")
    preview = await create_campaign(people, ["staff"], dry_run=True, actor="api-key:tests")
    for path in (f"{URL}/{theirs.id}", f"{URL}/{preview.id}", f"{URL}/999999", f"{URL}/abc", f"{URL}/{'9' * 40}"):
        assert (await browser.get(path)).status == 404, path
    assert f"{URL}/{theirs.id}" not in await (await browser.get(URL)).text()
    # A school the admin does not administer cannot be chosen either.
    assert (await browser.get(f"{URL}?school={other.id}")).status == 403
    response = await post(browser, "staff", action="send", school=str(other.id))
    assert response.status == 403
    assert await InvitationCampaign.filter(school=other).count() == 1


async def test_an_admin_of_two_schools_picks_one(people, signed_in):
    browser = await admin(signed_in)
    other, _ = await create_api_key("roosevelt")
    other.name = "Roosevelt High"
    await other.save()
    rivera = await User.get(memberships__external_id="t-rivera")
    await Membership.create(school=other, user=rivera, external_id="rivera-r", role=Role.STAFF, is_admin=True)
    page = await (await browser.get(f"{URL}?school={other.id}")).text()
    assert f'<option value="{other.id}" selected>Roosevelt High</option>' in page
    assert f'href="/directory/people?school={other.id}"' in page
    response = await post(browser, "staff", action="send", school=str(other.id))
    assert response.status == 303
    await browser.app[CAMPAIGN_RUNNER].wait_idle()
    campaign = await InvitationCampaign.get(dry_run=False)
    assert campaign.school_id == other.id and campaign.skipped_joined == 1  # Ms. Rivera herself
    assert "Roosevelt High" in await (await browser.get(f"{URL}/{campaign.id}")).text()
    assert f"{URL}/{campaign.id}" not in await (await browser.get(URL)).text()  # the first school's list


async def test_the_list_pages_by_twenty_newest_first(people, signed_in):
    browser = await admin(signed_in)
    ids = [(await create_campaign(people, ["staff"], dry_run=False, actor="api-key:sis")).id for _ in range(21)]
    await create_campaign(people, ["guardians"], dry_run=True, actor="api-key:sis")
    page = await (await browser.get(URL)).text()
    shown = [int(i) for i in re.findall(rf'href="{URL}/(\d+)"', page)]
    assert shown == ids[:0:-1]
    assert "School system (API key “sis”)" in page and "Waiting to start" in page
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', page).group(1)
    assert older == f"{URL}?before={ids[1]}"
    page = await (await browser.get(older)).text()
    assert [int(i) for i in re.findall(rf'href="{URL}/(\d+)"', page)] == [ids[0]]
    assert 'rel="next"' not in page
