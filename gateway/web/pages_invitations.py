"""`/directory/invitations`: staff admins invite people of their school to sign in, from the directory.

Plain form posts, so it works without JavaScript, on the campaign machinery of the API
(gateway.invites.campaigns; gateway.web.api_invites does the same by API):

1. `GET /directory/invitations` shows the audiences to choose (staff, guardians, students with an
   enabled login) and the school's earlier campaigns, newest first, 20 a page (`?before=<id>`).
   Dry runs (previews, here or by API) are not listed: they invited nobody.
2. `POST` with `action=preview` (the form's button, so also what Enter does) checks the audiences
   (none → the form again, 422, nothing written), then creates a dry-run campaign and counts it at
   once, as the API does (it writes its campaign row and the audit entry, never an invitation), and
   shows who would be invited and who is skipped and why. That page carries the audiences as hidden
   inputs with two buttons: `action=change` (the form again, the choice kept) and `action=send`.
3. `action=send` creates the real campaign (created_by `user:<id>`, like the other audit entries of
   the pages), starts it in the background runner and redirects (303) to its page.
4. `GET /directory/invitations/<id>` shows a campaign: who ran it when, its counts and how its
   invitations are doing in the outbox. Until it is planned the page reloads itself every 2 seconds
   (a meta refresh, no script).

Admins only (page_kit.signed_in_admin: 403 for everyone else); `school` (query or hidden field)
picks among several administered schools. Another school's campaign is 404.
"""
from __future__ import annotations

from typing import Any, Iterable

from aiohttp import web

from gateway.directory.models import User
from gateway.errors import NotFound
from gateway.i18n import _
from gateway.invites.campaigns import (
    DEFAULT_COOLDOWN_DAYS,
    DEFAULT_MAX_INVITATIONS,
    create_campaign,
    delivery_progress,
    run_campaign,
)
from gateway.invites.models import AUDIENCES, CampaignState, InvitationCampaign
from gateway.web import keys
from gateway.web.api_invites import CAMPAIGN_RUNNER
from gateway.web.page_kit import SignedIn, form_int, redirect, render, signed_in_admin
from gateway.web.thread_view import clock

PATH = "/directory/invitations"
PER_PAGE = 20


# -- words for our vocabulary ----------------------------------------------------------------------


def audience_name(audience: str) -> str:
    return {"staff": _("Staff"), "guardians": _("Guardians"), "students": _("Students")}.get(audience, audience)


def audience_hint(audience: str) -> str:
    return {
        "staff": _("Everyone on the school's staff list."),
        "guardians": _("The parents and guardians in the directory."),
        "students": _("Only students whose login the school has enabled; the others are skipped."),
    }.get(audience, "")


def state_name(campaign: InvitationCampaign) -> str:
    if campaign.state is CampaignState.DONE and campaign.error:
        return _("Stopped after repeated errors")
    return {CampaignState.QUEUED: _("Waiting to start"), CampaignState.RUNNING: _("In progress"),
            CampaignState.DONE: _("Finished")}.get(campaign.state, campaign.state.value)


def state_tone(campaign: InvitationCampaign) -> str:
    if campaign.error:
        return "bad"
    return "good" if campaign.state is CampaignState.DONE else "warn"


async def actor_names(actors: Iterable[str]) -> dict[str, str]:
    """created_by → who that is in words: a person's name (web), the API key's name, else as stored."""
    actors = set(actors)
    user_ids = {a: form_int(a.split(":")[1]) for a in actors if a.startswith("user:")}
    names = dict(await User.filter(id__in=[i for i in user_ids.values() if i]).values_list("id", "name"))
    out: dict[str, str] = {}
    for actor in actors:
        if actor in user_ids:
            out[actor] = names.get(user_ids[actor]) or _("A former user")
        elif actor.startswith("api-key:"):
            out[actor] = _("School system (API key “%(name)s”)") % {"name": actor.removeprefix("api-key:")}
        else:
            out[actor] = actor
    return out


def _words() -> dict[str, Any]:
    return {"audience_name": audience_name, "audience_hint": audience_hint, "state_name": state_name,
            "state_tone": state_tone}


# -- handlers --------------------------------------------------------------------------------------


async def invitations_page(request: web.Request) -> web.Response:
    viewer, admin = await signed_in_admin(request, request.query.get("school"))
    return await show_form(request, viewer, admin, [])


async def invitations(request: web.Request) -> web.Response:
    form = await request.post()
    viewer, admin = await signed_in_admin(request, form.get("school"))
    submitted = [value for value in form.getall("audience", []) if isinstance(value, str)]
    chosen = [a for a in AUDIENCES if a in submitted]
    action = str(form.get("action", "preview"))
    if action == "change":
        return await show_form(request, viewer, admin, chosen)
    if not chosen or any(value not in AUDIENCES for value in submitted):
        return await show_form(request, viewer, admin, chosen, error=_("Choose who to invite."), invalid=True,
                               status=422)
    actor = f"user:{viewer.user.id}"
    if action == "send":
        # No double-submission guard of its own (page_kit.once is for messages): a second campaign
        # from a double click is harmless by design. Campaigns of a school run one after the other,
        # and the second finds everyone just invited by the first and skips them (cooldown).
        campaign = await create_campaign(admin.school, chosen, dry_run=False, actor=actor)
        request.config_dict[CAMPAIGN_RUNNER].start(campaign.id)
        return redirect(f"{PATH}/{campaign.id}")
    # A dry run is counted at once, as the API does: it writes its campaign row, never an invitation.
    campaign = await create_campaign(admin.school, chosen, dry_run=True, actor=actor)
    counted = await run_campaign(campaign.id, request.config_dict[keys.SETTINGS].secret_key)
    if counted is None or counted.state is not CampaignState.DONE:
        return await show_form(request, viewer, admin, chosen, status=503,
                               error=_("The invitations could not be counted just now. Please try again."))
    return render(request, "invitation_preview.html", {
        **_context(viewer, admin), **_words(), "campaign": counted, "chosen": chosen,
        "cooldown_days": DEFAULT_COOLDOWN_DAYS, "max_invitations": DEFAULT_MAX_INVITATIONS,
    })


async def campaign_page(request: web.Request) -> web.Response:
    viewer, admin = await signed_in_admin(request, request.query.get("school"))
    campaign_id = form_int(request.match_info["id"])
    campaign = await InvitationCampaign.get_or_none(
        id=campaign_id, school_id__in=viewer.admin_of, dry_run=False) if campaign_id else None
    if campaign is None:
        raise NotFound("no such invitation campaign")
    if campaign.school_id != admin.school_id:  # one of the admin's other schools: shown as that school's
        viewer, admin = await signed_in_admin(request, campaign.school_id)
    progress = (await delivery_progress([campaign.id]))[campaign.id]
    fmt = clock(viewer.lang, admin.school.timezone)
    return render(request, "invitation_campaign.html", {
        **_context(viewer, admin), **_words(), "campaign": campaign, "progress": progress, "fmt": fmt,
        "who": (await actor_names([campaign.created_by]))[campaign.created_by],
        "refreshing": campaign.state is not CampaignState.DONE,
    })


# -- the form and the list -------------------------------------------------------------------------


def _context(viewer: SignedIn, admin: Any) -> dict[str, Any]:
    several = len(viewer.admin_of) > 1
    return {"school": admin.school, "school_param": admin.school_id if several else None,
            "admin_schools": [m for m in viewer.staff if m.is_admin] if several else []}


async def show_form(request: web.Request, viewer: SignedIn, admin: Any, chosen: list[str], *,
                    error: str | None = None, invalid: bool = False, status: int = 200) -> web.Response:
    context = _context(viewer, admin)
    before = form_int(request.query.get("before"))
    query = InvitationCampaign.filter(school_id=admin.school_id, dry_run=False)
    if before:
        query = query.filter(id__lt=before)
    rows = await query.order_by("-id").limit(PER_PAGE + 1)
    campaigns = rows[:PER_PAGE]
    next_link = None
    if len(rows) > PER_PAGE:
        next_link = f"{PATH}?before={campaigns[-1].id}"
        if context["school_param"]:
            next_link += f"&school={context['school_param']}"
    return render(request, "invitations.html", {
        **context, **_words(), "audiences": AUDIENCES, "chosen": chosen, "error": error, "invalid": invalid,
        "campaigns": campaigns, "who": await actor_names(c.created_by for c in campaigns),
        "fmt": clock(viewer.lang, admin.school.timezone), "next_link": next_link, "older": bool(before),
        "cooldown_days": DEFAULT_COOLDOWN_DAYS, "max_invitations": DEFAULT_MAX_INVITATIONS,
    }, status=status)
