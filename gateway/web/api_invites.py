"""Invitation campaigns by API (/api/v1/invitation-campaigns), run in the background.

POST answers 202 with the queued campaign and plans it in a background task of this process (any
worker takes it over if this process dies first). A dry run is counted at once and answered 200 with
the counts: it writes no invitation and no delivery, so there is nothing to wait for.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from aiohttp import web

from gateway.errors import InvalidInput, NotFound
from gateway.invites.campaigns import (
    CampaignRunner,
    create_campaign,
    delivery_progress,
    run_campaign,
)
from gateway.invites.models import InvitationCampaign
from gateway.web import keys
from gateway.web.api import _actor, read_json
from gateway.web.schemas import InvitationCampaignIn

PAGE = 100
CAMPAIGN_RUNNER: web.AppKey[CampaignRunner] = web.AppKey("campaign_runner")


async def campaign_runner(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the runner of this process; where workers run, it also resumes abandoned campaigns."""
    dispatcher = app.get(keys.DISPATCHER)
    runner = CampaignRunner(app[keys.SETTINGS].secret_key, on_queued=dispatcher.wake if dispatcher else None)
    app[CAMPAIGN_RUNNER] = runner
    stop = asyncio.Event()
    sweeper = asyncio.create_task(runner.sweep_forever(stop), name="campaign-sweeper") if dispatcher else None
    yield
    stop.set()
    if sweeper is not None:
        await sweeper
    await runner.wait_idle(timeout=30)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def campaign_json(c: InvitationCampaign, progress: dict[str, int]) -> dict[str, Any]:
    return {
        "id": c.id,
        "state": c.state.value,
        "audiences": c.audiences,
        "dry_run": c.dry_run,
        "cooldown_days": c.cooldown_days,
        "max_invitations": c.max_invitations,
        "targeted": c.targeted,
        "invited": c.invited,
        "skipped_joined": c.skipped_joined,
        "skipped_not_enabled": c.skipped_not_enabled,
        "skipped_no_contact": c.skipped_no_contact,
        "skipped_cooldown": c.skipped_cooldown,
        "skipped_cap": c.skipped_cap,
        "failed": progress["failed"],
        "deliveries": progress,
        "created_by": c.created_by,
        "created_at": c.created_at.isoformat(),
        "started_at": _iso(c.started_at),
        "finished_at": _iso(c.finished_at),
        "error": c.error,
    }


async def post_campaign(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    body = await read_json(request, InvitationCampaignIn)
    try:
        campaign = await create_campaign(school, body.audiences, dry_run=body.dry_run, actor=_actor(request),
                                         cooldown_days=body.cooldown_days, max_invitations=body.max_invitations)
    except ValueError as exc:
        raise InvalidInput(f"audiences: {exc}") from None
    settings = request.config_dict[keys.SETTINGS]
    if body.dry_run:
        done = await run_campaign(campaign.id, settings.secret_key)
        campaign = done or await InvitationCampaign.get(id=campaign.id)
        return web.json_response(campaign_json(campaign, (await delivery_progress([campaign.id]))[campaign.id]))
    request.config_dict[CAMPAIGN_RUNNER].start(campaign.id)
    return web.json_response(campaign_json(campaign, {"queued": 0, "sent": 0, "failed": 0}), status=202)


async def get_campaign(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    raw = request.match_info["id"]
    campaign = await InvitationCampaign.get_or_none(id=int(raw), school=school) if raw.isdigit() and len(raw) < 12 else None
    if campaign is None:
        raise NotFound(f"no invitation campaign {raw!r} in this school")
    return web.json_response(campaign_json(campaign, (await delivery_progress([campaign.id]))[campaign.id]))


async def list_campaigns(request: web.Request) -> web.Response:
    """GET /api/v1/invitation-campaigns[?before=<id>]: newest first, 100 a page."""
    school = request[keys.SCHOOL]
    query = InvitationCampaign.filter(school=school)
    before = request.query.get("before", "")
    if before:
        if not before.isdigit() or len(before) > 12:
            raise InvalidInput("before: must be a campaign id")
        query = query.filter(id__lt=int(before))
    campaigns = await query.order_by("-id").limit(PAGE)
    progress = await delivery_progress([c.id for c in campaigns])
    items = [campaign_json(c, progress[c.id]) for c in campaigns]
    return web.json_response({"items": items, "next_before": items[-1]["id"] if len(items) == PAGE else None})
