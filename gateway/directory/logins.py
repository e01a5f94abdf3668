"""Enabling or disabling students' logins, one by one or a whole section, with an audit trail.

A student whose login is disabled cannot sign in (gateway.web.pages_auth) and is never invited
(gateway.invites.targets). Only students of the acting admin's school are touched, whatever ids
a form sends.
"""
from __future__ import annotations

from datetime import datetime, timezone

from tortoise.transactions import in_transaction

from gateway.directory.models import AuditLog, Membership, Role, Section, SectionMember, User
from gateway.invites.tokens import LoginToken


async def students_of_section(school_id: int, section_id: int) -> list[int] | None:
    """The students in a section of this school (None when the section is not this school's)."""
    if not await Section.exists(id=section_id, school_id=school_id):
        return None
    members = await SectionMember.filter(section_id=section_id).values_list("user_id", flat=True)
    return list(await Membership.filter(school_id=school_id, role=Role.STUDENT, user_id__in=list(members))
                .values_list("user_id", flat=True))


async def set_student_logins(school_id: int, user_ids: list[int], enabled: bool, *, actor: str,
                             section: str | None = None) -> list[int]:
    """Set login_enabled for these students of the school; returns the ids that changed.

    One transaction: the flags and one audit row per student that changed.
    """
    async with in_transaction():
        students = dict(await Membership.filter(school_id=school_id, role=Role.STUDENT, user_id__in=user_ids)
                        .values_list("user_id", "external_id"))
        changing = list(await User.filter(id__in=list(students)).exclude(login_enabled=enabled)
                        .values_list("id", flat=True))
        if changing:
            await User.filter(id__in=changing).update(login_enabled=enabled)
            if not enabled:
                # Invitations and sign-in links already in the outbox must not go out: a used token
                # makes the dispatcher drop its delivery ("used"), and an opened link shows "expired".
                await LoginToken.filter(user_id__in=changing, used_at=None).update(used_at=datetime.now(timezone.utc))
            action = "student.login_enabled" if enabled else "student.login_disabled"
            details = {"section": section} if section else {}
            await AuditLog.bulk_create([AuditLog(school_id=school_id, actor=actor, action=action,
                                                 target=f"user:{students[uid]}", details=details)
                                        for uid in changing])
    return changing
