"""`/directory/people`: the School Directory for staff admins, and switching students' logins on or off.

- `GET /directory/people`: everyone in the school, 50 a page by name, with role, sections, a
  student's guardians, joined (when), last invited (when, how), each contact point's state and a
  student's login. Filters in the query string (q, role, section, joined, login, page), so a filtered
  view is a link. Contact details appear here for admins only (signed_in_admin → 403 for others).
- `GET /directory/people.csv`: the same filtered list as a spreadsheet. Cells that a spreadsheet
  would run as a formula (starting with = + - @, tab or carriage return) get a leading apostrophe
  (OWASP, "CSV Injection"): a roster value like =HYPERLINK(...) stays text.
- `POST /directory/people/<user id>/login` and `POST /directory/sections/login`: enable or disable
  one student's login or every student's in a section (gateway.directory.logins, audit-logged);
  disabling also ends the student's sessions. Then back to the list the admin was looking at.
"""
from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway.directory.logins import set_student_logins, students_of_section
from gateway.directory.models import Membership, Role
from gateway.directory.people import PER_PAGE, PeopleFilter, find_people, school_sections
from gateway.errors import NotFound
from gateway.i18n import ngettext
from gateway.web import labels
from gateway.web.page_kit import SignedIn, form_int, redirect, render, signed_in_admin
from gateway.web.sessions import Session
from gateway.web.thread_view import clock

EXPORT_LIMIT = 100_000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def read_filter(query: Any) -> PeopleFilter:
    role = query.get("role", "")
    joined = query.get("joined", "")
    login = query.get("login", "")
    return PeopleFilter(search=query.get("q", "").strip()[:100],
                        role=role if role in ("staff", "guardian", "student") else "",
                        section_id=form_int(query.get("section")),
                        joined=joined if joined in ("yes", "no") else "",
                        login=login if login in ("enabled", "disabled") else "",
                        page=min(form_int(query.get("page")) or 1, 100_000))


def filter_query(flt: PeopleFilter, school_param: int | None, **changes: Any) -> dict[str, Any]:
    query = {"q": flt.search, "role": flt.role, "section": flt.section_id or "", "joined": flt.joined,
             "login": flt.login, "page": flt.page if flt.page > 1 else "", "school": school_param or ""}
    query.update(changes)
    return {k: v for k, v in query.items() if v not in ("", None)}


def _school_param(viewer: SignedIn, admin: Membership) -> int | None:
    """The school id to carry in links, only when the admin has a choice of schools."""
    return admin.school_id if sum(1 for m in viewer.staff if m.is_admin) > 1 else None


async def directory_home(request: web.Request) -> web.Response:
    await signed_in_admin(request)
    return redirect("/directory/people")


async def people(request: web.Request) -> web.Response:
    viewer, admin = await signed_in_admin(request, request.query.get("school"))
    flt = read_filter(request.query)
    found, total = await find_people(admin.school_id, flt)
    pages = max(1, -(-total // PER_PAGE))
    param = _school_param(viewer, admin)

    def link(**changes: Any) -> str:
        return "/directory/people?" + urlencode(filter_query(flt, param, **changes))

    here = link()
    return render(request, "people.html", {
        "school": admin.school, "people": found, "total": total, "flt": flt, "labels": labels,
        "sections": await school_sections(admin.school_id), "fmt": clock(viewer.lang, admin.school.timezone),
        "page": flt.page, "pages": pages, "school_param": param, "here": here,
        "prev_link": link(page=flt.page - 1) if flt.page > 1 else None,
        "next_link": link(page=flt.page + 1) if flt.page < pages else None,
        "export_link": "/directory/people.csv?" + urlencode(filter_query(flt, param, page="")),
        "admin_schools": [m for m in viewer.staff if m.is_admin] if param else [],
        "notice": _notice(request.query.get("changed")),
    })


def _notice(changed: str | None) -> str | None:
    count = form_int(changed)
    if count is None:
        return None
    return ngettext("%(num)s student's login was changed.", "%(num)s students' logins were changed.", count) % {
        "num": count}


def back_to_list(form: Any, changed: int) -> web.Response:
    """Return to the list the admin was on (a local /directory/people URL only), with a notice."""
    back = str(form.get("back", ""))
    if not back.startswith("/directory/people") or "\n" in back or "\r" in back or "//" in back:
        back = "/directory/people"
    joiner = "&" if "?" in back else "?"
    return redirect(f"{back}{joiner}changed={changed}")


async def student_login(request: web.Request) -> web.Response:
    form = await request.post()
    viewer, admin = await signed_in_admin(request, form.get("school"))
    student_id = form_int(request.match_info["id"])
    if student_id is None or not await Membership.exists(school_id=admin.school_id, user_id=student_id,
                                                         role=Role.STUDENT):
        raise NotFound("no such student in this school")
    changed = await _apply(admin, viewer, [student_id], form.get("enabled") == "1")
    return back_to_list(form, len(changed))


async def section_logins(request: web.Request) -> web.Response:
    form = await request.post()
    viewer, admin = await signed_in_admin(request, form.get("school"))
    section_id = form_int(form.get("section"))
    students = await students_of_section(admin.school_id, section_id) if section_id else None
    if students is None:
        raise NotFound("no such section in this school")
    name = dict(await school_sections(admin.school_id)).get(section_id)  # type: ignore[arg-type]
    changed = await _apply(admin, viewer, students, form.get("enabled") == "1", section=name)
    return back_to_list(form, len(changed))


async def _apply(admin: Membership, viewer: SignedIn, students: list[int], enabled: bool, *,
                 section: str | None = None) -> list[int]:
    changed = await set_student_logins(admin.school_id, students, enabled, actor=f"user:{viewer.user.id}",
                                       section=section)
    if not enabled and changed:
        await Session.filter(user_id__in=changed).delete()  # signed-in students are signed out at once
    return changed


async def people_csv(request: web.Request) -> web.StreamResponse:
    viewer, admin = await signed_in_admin(request, request.query.get("school"))
    flt = read_filter(request.query)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{admin.school.slug}-people.csv"'})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["external_id", "name", "role", "admin", "sections", "guardians_or_students", "joined_at",
                     "last_invited_at", "last_invited_by", "login_enabled", "email", "phone", "problems"])
    await response.write(("\ufeff" + buffer.getvalue()).encode())  # BOM: spreadsheets read it as UTF-8
    page = 1
    while (page - 1) * PER_PAGE < EXPORT_LIMIT:
        found, _total = await find_people(admin.school_id, PeopleFilter(**{**flt.__dict__, "page": page}))
        if not found:
            break
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for p in found:
            emails = [c.address for c in p.contacts if c.kind == "email"]
            phones = [c.address for c in p.contacts if c.kind == "phone"]
            problems = [f"{c.address}: {c.problem}" for c in p.contacts if c.problem]
            writer.writerow([safe_cell(v) for v in (
                p.external_id, p.name, p.role, "yes" if p.is_admin else "", "; ".join(p.sections),
                "; ".join(p.relatives), p.joined_at.isoformat() if p.joined_at else "",
                p.invited_at.isoformat() if p.invited_at else "", p.invited_by or "",
                ("yes" if p.login_enabled else "no") if p.role == "student" else "", "; ".join(emails),
                "; ".join(phones), "; ".join(problems))])
        await response.write(buffer.getvalue().encode())
        page += 1
    await response.write_eof()
    return response


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs (OWASP CSV Injection)."""
    return "'" + value if value.startswith(FORMULA_START) else value
