"""The School Directory's people list: one page of a school's people with what an admin needs to decide.

For each person: role (and admin), sections, a student's guardians (a guardian's students),
whether and when they joined, when they were last invited and how, the state of each contact
point, and (students) whether their login is enabled. Filters: name, role, section, joined or
not, student login enabled or not. One SQL statement finds the page (50 people, by name); a few
more, each over those 50 only, fill in the rest, so a school of 50,000 costs the same as one of 50.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tortoise import connections

from gateway.db import as_datetime, dialect, like_pattern, placeholders
from gateway.directory.models import ContactPoint, Relationship, Role, Section, SectionMember, User
from gateway.invites.models import Invitation, InvitationState

PER_PAGE = 50


@dataclass(frozen=True)
class PeopleFilter:
    search: str = ""
    role: str = ""          # staff | guardian | student | ""
    section_id: int | None = None
    joined: str = ""        # yes | no | ""
    login: str = ""         # enabled | disabled | "" (students' login)
    page: int = 1


@dataclass
class Contact:
    id: int
    kind: str               # email | phone
    address: str
    problem: str | None     # opted_out | bouncing | unreachable | None


@dataclass
class Person:
    user_id: int
    external_id: str
    name: str
    role: str
    is_admin: bool
    joined_at: datetime | None
    login_enabled: bool
    sections: list[str] = field(default_factory=list)
    relatives: list[str] = field(default_factory=list)   # a student's guardians, a guardian's students
    contacts: list[Contact] = field(default_factory=list)
    invited_at: datetime | None = None
    invited_by: str | None = None                        # sms | email




async def find_people(school_id: int, flt: PeopleFilter) -> tuple[list[Person], int]:
    """One page of people (by name) and how many match in all."""
    where = ['m."school_id" = ?']
    args: list[Any] = [school_id]
    if flt.role in (Role.STAFF.value, Role.GUARDIAN.value, Role.STUDENT.value):
        where.append('m."role" = ?')
        args.append(flt.role)
    if flt.search:
        where.append("LOWER(u.\"name\") LIKE ? ESCAPE '\\'")
        args.append(like_pattern(flt.search[:100]))
    if flt.section_id is not None:
        where.append('m."user_id" IN (SELECT sm."user_id" FROM "section_member" sm JOIN "section" s '
                     'ON s."id" = sm."section_id" WHERE sm."section_id" = ? AND s."school_id" = ?)')
        args += [flt.section_id, school_id]
    if flt.joined == "yes":
        where.append('u."joined_at" IS NOT NULL')
    elif flt.joined == "no":
        where.append('u."joined_at" IS NULL')
    if flt.login in ("enabled", "disabled"):
        where.append(f"m.\"role\" = 'student' AND u.\"login_enabled\" = {'TRUE' if flt.login == 'enabled' else 'FALSE'}")
    source = f'FROM "membership" m JOIN "user" u ON u."id" = m."user_id" WHERE {" AND ".join(where)}'
    postgres = dialect() == "postgres"
    conn = connections.get("default")
    page = max(flt.page, 1)
    # Sorting calls the function once per person of the school: SQLite's built-in NOCASE collation
    # instead of its (Python, Unicode) LOWER keeps a 50,000-person page fast; accents sort after z there.
    by_name = 'LOWER(u."name")' if postgres else 'u."name" COLLATE NOCASE'
    _n, rows = await conn.execute_query(placeholders(postgres, (
        'SELECT u."id" AS id, u."name" AS name, u."joined_at" AS joined_at, u."login_enabled" AS login_enabled, '
        f'm."role" AS role, m."external_id" AS external_id, m."is_admin" AS is_admin {source} '
        f'ORDER BY {by_name}, u."id" LIMIT ? OFFSET ?')), [*args, PER_PAGE, (page - 1) * PER_PAGE])
    _n, counted = await conn.execute_query(placeholders(postgres, f"SELECT COUNT(*) AS n {source}"), args)
    people = [Person(user_id=r["id"], external_id=r["external_id"], name=r["name"], role=r["role"],
                     is_admin=bool(r["is_admin"]), joined_at=as_datetime(r["joined_at"]),
                     login_enabled=bool(r["login_enabled"])) for r in rows]
    await _fill_in(school_id, people)
    return people, int(counted[0]["n"])


async def _fill_in(school_id: int, people: list[Person]) -> None:
    if not people:
        return
    by_id = {p.user_id: p for p in people}
    ids = list(by_id)
    sections = dict(await Section.filter(school_id=school_id).values_list("id", "name"))
    for user_id, section_id in await SectionMember.filter(user_id__in=ids, section_id__in=list(sections)).values_list(
            "user_id", "section_id"):
        by_id[user_id].sections.append(sections[section_id])
    links = await Relationship.filter(school_id=school_id).filter(
        guardian_id__in=ids).values_list("guardian_id", "student_id")
    links += await Relationship.filter(school_id=school_id, student_id__in=ids).values_list("guardian_id", "student_id")
    other_ids = {g for g, _ in links} | {s for _, s in links}
    names = dict(await User.filter(id__in=list(other_ids)).values_list("id", "name")) if other_ids else {}
    for guardian_id, student_id in set(links):
        if guardian_id in by_id:
            by_id[guardian_id].relatives.append(names.get(student_id, ""))
        if student_id in by_id:
            by_id[student_id].relatives.append(names.get(guardian_id, ""))
    for cp in await ContactPoint.filter(user_id__in=ids).order_by("id"):
        by_id[cp.user_id].contacts.append(Contact(cp.id, cp.kind.value, cp.address, cp.problem))
    invited = await Invitation.filter(user_id__in=ids, state=InvitationState.INVITED,
                                      campaign__school_id=school_id).order_by("created_at").values_list(
        "user_id", "created_at", "channel")
    for user_id, created_at, channel in invited:  # oldest first: the last one wins
        by_id[user_id].invited_at, by_id[user_id].invited_by = created_at, channel
    for person in people:
        person.sections.sort(key=str.casefold)
        person.relatives.sort(key=str.casefold)


async def school_sections(school_id: int) -> list[tuple[int, str]]:
    return sorted(await Section.filter(school_id=school_id).values_list("id", "name"), key=lambda s: s[1].casefold())
