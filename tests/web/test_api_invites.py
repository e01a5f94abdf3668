"""POST/GET /api/v1/invitation-campaigns: campaigns by API, run in the background, scoped to the key's school."""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from gateway.directory.models import AuditLog
from gateway.directory.schools import create_api_key
from gateway.invites.campaigns import create_campaign
from gateway.invites.models import Invitation, InvitationCampaign
from gateway.invites.tokens import LoginToken, Purpose, check_token
from gateway.settings import SmtpSettings
from gateway.threads.models import Delivery
from gateway.web.api_invites import CAMPAIGN_RUNNER

URL = "/api/v1/invitation-campaigns"


async def assert_error(response, status: int, code: str, *fragments: str) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    for fragment in fragments:
        assert fragment in body["error"]["message"]


async def nothing_written() -> None:
    assert await InvitationCampaign.all().count() == 0
    assert await Invitation.all().count() == 0
    assert await Delivery.all().count() == 0
    assert await LoginToken.all().count() == 0


async def test_a_campaign_is_accepted_then_planned_in_the_background(client, auth, people):
    response = await client.post(URL, headers=auth, json={"audiences": ["guardians", "staff"]})
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["state"] == "queued" and isinstance(body["id"], int)
    await client.app[CAMPAIGN_RUNNER].wait_idle()

    response = await client.get(f"{URL}/{body['id']}", headers=auth)
    assert response.status == 200
    got = await response.json()
    assert got["state"] == "done" and got["audiences"] == ["guardians", "staff"] and got["dry_run"] is False
    assert {k: got[k] for k in ("targeted", "invited", "skipped_joined", "skipped_not_enabled", "skipped_no_contact",
                                "skipped_cooldown", "skipped_cap", "failed")} == {
        "targeted": 5, "invited": 5, "skipped_joined": 0, "skipped_not_enabled": 0, "skipped_no_contact": 0,
        "skipped_cooldown": 0, "skipped_cap": 0, "failed": 0}
    assert got["deliveries"] == {"queued": 5, "sent": 0, "failed": 0}  # no worker in this process
    assert got["created_by"] == "api-key:tests" and got["started_at"] and got["finished_at"]
    assert await AuditLog.filter(action="invitations.run", target=f"invitation_campaign:{body['id']}").count() == 1


async def test_the_list_is_newest_first_and_says_who_ran_what_when(client, auth, people):
    ids = []
    for audiences in (["staff"], ["guardians"], ["students"]):
        response = await client.post(URL, headers=auth, json={"audiences": audiences, "dry_run": True})
        ids.append((await response.json())["id"])
    response = await client.get(URL, headers=auth)
    assert response.status == 200
    body = await response.json()
    assert [c["id"] for c in body["items"]] == ids[::-1] and body["next_before"] is None
    assert [c["audiences"] for c in body["items"]] == [["students"], ["guardians"], ["staff"]]
    assert all(c["created_by"] == "api-key:tests" and c["created_at"] for c in body["items"])
    older = await (await client.get(f"{URL}?before={ids[2]}", headers=auth)).json()
    assert [c["id"] for c in older["items"]] == ids[1::-1]
    await assert_error(await client.get(f"{URL}?before=x", headers=auth), 422, "invalid", "before")


async def test_a_dry_run_answers_with_the_counts_and_writes_nothing(client, auth, people):
    response = await client.post(URL, headers=auth, json={"audiences": ["staff", "guardians", "students"],
                                                          "dry_run": True})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["state"], body["dry_run"], body["targeted"], body["invited"], body["skipped_not_enabled"]) == (
        "done", True, 7, 5, 2)
    assert await Invitation.all().count() == 0 and await Delivery.all().count() == 0
    assert await LoginToken.all().count() == 0
    assert await AuditLog.filter(action="invitations.dry_run").count() == 1


async def test_with_a_worker_the_invitations_reach_smtp(make_client, auth, people, fake_smtp):
    client = await make_client(run_worker=True, smtp=SmtpSettings(fake_smtp.host, fake_smtp.port),
                               worker_poll_seconds=0.05)
    response = await client.post(URL, headers=auth, json={"audiences": ["guardians"]})
    campaign_id = (await response.json())["id"]
    for _ in range(200):
        if len(fake_smtp.received) == 3:
            break
        await asyncio.sleep(0.05)
    assert sorted(r.rcpt_tos[0] for r in fake_smtp.received) == [
        "ana@family.example", "john@family.example", "wei@family.example"]
    text = fake_smtp.received[0].message.get_body(("plain",)).get_content()
    token = re.search(r"https://gateway\.test/join/([a-z2-7]{26})", text).group(1)
    assert (await check_token(token, (Purpose.FIRST_LOGIN,))).ok
    for _ in range(100):
        body = await (await client.get(f"{URL}/{campaign_id}", headers=auth)).json()
        if body["deliveries"]["sent"] == 3:
            break
        await asyncio.sleep(0.05)
    assert body["state"] == "done" and body["deliveries"] == {"queued": 0, "sent": 3, "failed": 0}


@pytest.mark.parametrize("payload, status, code, fragment", [
    ({"audiences": ["parents"]}, 422, "invalid", "audiences[0]"),
    ({"audiences": ["staff", "teachers"]}, 422, "invalid", "audiences[1]"),
    ({"audiences": []}, 422, "invalid", "audiences"),
    ({}, 422, "invalid", "audiences"),
    ({"audiences": "staff"}, 422, "invalid", "audiences"),
    ({"audiences": ["staff"], "dry_run": "maybe"}, 422, "invalid", "dry_run"),
    ({"audiences": ["staff"], "cooldown_days": -1}, 422, "invalid", "cooldown_days"),
    ({"audiences": ["staff"], "max_invitations": 0}, 422, "invalid", "max_invitations"),
    ({"audiences": ["staff"], "school": "other"}, 422, "invalid", "unknown field"),
    (b"{\"audiences\": [\"staff\"", 400, "malformed_json", "not valid JSON"),
    (b"[\"staff\"]", 400, "malformed_json", "JSON object"),
    (b"", 400, "malformed_json", "JSON object"),
])
async def test_bad_input_is_a_json_error_and_writes_nothing(client, auth, people, payload, status, code, fragment):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = await client.post(URL, headers={**auth, "Content-Type": "application/json"}, data=data)
    await assert_error(response, status, code, fragment)
    await nothing_written()


async def test_another_schools_campaign_is_not_found(client, auth, people):
    other, _ = await create_api_key("roosevelt")
    theirs = await create_campaign(other, ["staff"], dry_run=True, actor="api-key:theirs")
    await assert_error(await client.get(f"{URL}/{theirs.id}", headers=auth), 404, "not_found")
    assert (await (await client.get(URL, headers=auth)).json())["items"] == []
    for bad in ("999999", "abc", "1e3", "-1", "9" * 40):
        await assert_error(await client.get(f"{URL}/{bad}", headers=auth), 404, "not_found")


async def test_campaigns_need_a_key(client, people):
    await assert_error(await client.post(URL, json={"audiences": ["staff"]}), 401, "unauthorized")
    await assert_error(await client.get(URL), 401, "unauthorized")
    await assert_error(await client.get(f"{URL}/1"), 401, "unauthorized")
    await nothing_written()
