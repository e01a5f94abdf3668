"""Who a campaign invites, and why the others are skipped: the decisions, read set-based.

The order of reasons is documented in gateway.invites.campaigns.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.expressions import Subquery
from tortoise.functions import Count

from gateway.db import placeholders
from gateway.directory.models import (
    ContactKind,
    Membership,
    Role,
    School,
)
from gateway.invites.models import (
    Invitation,
    InvitationCampaign,
    InvitationState,
    SkipReason,
)

ROLE_OF_AUDIENCE = {"staff": Role.STAFF, "guardians": Role.GUARDIAN, "students": Role.STUDENT}


@dataclass(frozen=True, slots=True)
class Decision:
    user_id: int
    reason: SkipReason | None         # None: invite
    channel: str | None = None
    address: str | None = None


async def decide(school: School, campaign: InvitationCampaign, now: datetime) -> list[Decision]:
    """One decision per person of the audiences not yet recorded by this campaign, by user id."""
    roles = [ROLE_OF_AUDIENCE[a] for a in campaign.audiences]
    members = Subquery(Membership.filter(school_id=school.id, role__in=roles).values("user_id"))
    people, joined, may = await audience(school.id, roles)
    if not campaign.dry_run:
        people -= set(await Invitation.filter(campaign_id=campaign.id).values_list("user_id", flat=True))
    if not people:
        return []
    doubtful = sorted(people - may - joined)  # students here without login: staff or guardian elsewhere?
    for start in range(0, len(doubtful), 5000):
        may |= set(await Membership.filter(user_id__in=doubtful[start:start + 5000],
                                           role__in=[Role.STAFF, Role.GUARDIAN]).values_list("user_id", flat=True))
    email, phone = await usable_contacts(school.id, roles, sms_available=bool(school.sms_numbers))
    capped = set(await Invitation.filter(user_id__in=members, state=InvitationState.INVITED)
                 .annotate(n=Count("id")).group_by("user_id").filter(n__gte=campaign.max_invitations)
                 .values_list("user_id", flat=True))
    recent = set(await Invitation.filter(
        user_id__in=members, state=InvitationState.INVITED,
        created_at__gt=now - timedelta(days=campaign.cooldown_days)).values_list("user_id", flat=True))

    decisions: list[Decision] = []
    for uid in sorted(people):
        if uid in joined:
            decisions.append(Decision(uid, SkipReason.JOINED))
        elif uid not in may:
            decisions.append(Decision(uid, SkipReason.NOT_ENABLED))
        elif uid not in email and uid not in phone:
            decisions.append(Decision(uid, SkipReason.NO_CONTACT))
        elif uid in capped:
            decisions.append(Decision(uid, SkipReason.CAP))
        elif uid in recent:
            decisions.append(Decision(uid, SkipReason.COOLDOWN))
        elif uid in email:
            decisions.append(Decision(uid, None, "email", email[uid]))
        else:
            decisions.append(Decision(uid, None, "sms", phone[uid]))
    return decisions


async def audience(school_id: int, roles: list[Role]) -> tuple[set[int], set[int], set[int]]:
    """(everyone with one of `roles` in the school, who of them joined, who of them may log in as far
    as this school tells: login_enabled, or staff or guardian here). One pass over the memberships."""
    conn = connections.get("default")
    query = placeholders(conn.capabilities.dialect == "postgres", (
        'SELECT m."user_id", m."role", u."joined_at" IS NOT NULL, u."login_enabled" FROM "membership" m '
        'JOIN "user" u ON u."id" = m."user_id" WHERE m."school_id" = ? AND m."role" IN ({roles})'
    ).replace("{roles}", ", ".join("?" * len(roles))))
    _, rows = await conn.execute_query(query, [school_id, *(r.value for r in roles)])
    people: set[int] = set()
    joined: set[int] = set()
    may: set[int] = set()
    student = Role.STUDENT.value
    for uid, role, has_joined, login_enabled in rows:
        people.add(uid)
        if has_joined:
            joined.add(uid)
        if login_enabled or role != student:
            may.add(uid)
    return people, joined, may


async def usable_contacts(school_id: int, roles: list[Role], *, sms_available: bool) -> tuple[dict[int, str], dict[int, str]]:
    """user id → their first usable e-mail address, and → their first usable phone, for the people
    of these roles who have not joined (DESIGN 5: an opted-out, bouncing or unreachable address is not
    usable). Raw SQL: at 100,000 people, building tortoise values costs twice the query."""
    conn = connections.get("default")
    query = placeholders(conn.capabilities.dialect == "postgres", (
        'SELECT cp."user_id", cp."kind", cp."address" FROM "contact_point" cp JOIN "user" u ON u."id" = cp."user_id" '
        'WHERE cp."user_id" IN (SELECT "user_id" FROM "membership" WHERE "school_id" = ? AND "role" IN ({roles})) '
        'AND u."joined_at" IS NULL AND cp."opted_out_at" IS NULL AND cp."bouncing_at" IS NULL '
        'AND (cp."unreachable_reason" IS NULL OR cp."unreachable_reason" = \'\') ORDER BY cp."id" DESC'
    ).replace("{roles}", ", ".join("?" * len(roles))))
    _, rows = await conn.execute_query(query, [school_id, *(r.value for r in roles)])
    email: dict[int, str] = {}
    phone: dict[int, str] = {}
    for uid, kind, address in rows:  # newest first, so the oldest (the first) wins
        if kind == ContactKind.EMAIL.value:
            email[uid] = address
        elif sms_available:
            phone[uid] = address
    return email, phone
