"""Conversation lists: `/conversations` for staff and `/inbox` for guardians and students.

Both are one page of 50, newest first, with unread counts; filters travel in the query string
(state, kind, unread, q, page), so a filtered list is a link that can be bookmarked. Staff admins
can switch to every conversation of their school (`scope=all`).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway.threads.listing import ListFilter, list_conversations
from gateway.web import labels
from gateway.web.page_kit import SignedIn, form_int, redirect, render, signed_in, signed_in_staff
from gateway.web.thread_view import clock

STATES = ("open", "closed")
KINDS = ("conversation", "announcement", "newsletter")


def read_filter(request: web.Request) -> ListFilter:
    q = request.query
    state = q.get("state", "")
    kind = q.get("kind", "")
    return ListFilter(state=state if state in STATES else "", kind=kind if kind in KINDS else "",
                      unread_only=q.get("unread") == "1", search=q.get("q", "").strip()[:100],
                      page=min(form_int(q.get("page")) or 1, 10_000))


async def conversations(request: web.Request) -> web.Response:
    viewer = await signed_in_staff(request)
    everyone = request.query.get("scope") == "all" and bool(viewer.admin_of)
    return await _render_list(request, viewer, "/conversations", family=False,
                              all_of_schools=viewer.admin_of if everyone else None,
                              extra={"scope": "all" if everyone else ""})


async def inbox(request: web.Request) -> web.Response:
    viewer = await signed_in(request)
    if not viewer.is_family:
        return redirect("/conversations")  # staff's home is their conversation list
    return await _render_list(request, viewer, "/inbox", family=True)


async def _render_list(request: web.Request, viewer: SignedIn, path: str, *, family: bool,
                       all_of_schools: list[int] | None = None, extra: dict[str, str] | None = None) -> web.Response:
    flt = read_filter(request)
    items, more = await list_conversations(viewer.user.id, flt, family=family, all_of_schools=all_of_schools)
    schools = {m.school_id: m.school for m in viewer.memberships}
    zone = next(iter(schools.values())).timezone if schools else "UTC"
    fmt = clock(viewer.lang, zone)
    base: dict[str, Any] = {k: v for k, v in {
        "state": flt.state, "kind": flt.kind, "unread": "1" if flt.unread_only else "", "q": flt.search,
        **(extra or {})}.items() if v}

    def page_link(page: int) -> str:
        return path + "?" + urlencode({**base, "page": page}) if page > 1 else path + ("?" + urlencode(base) if base else "")

    return render(request, "conversation_list.html", {
        "items": items, "flt": flt, "labels": labels, "fmt": fmt, "family": family, "list_path": path,
        "schools": schools if len(schools) > 1 else {}, "scope": (extra or {}).get("scope", ""),
        "next_link": page_link(flt.page + 1) if more else None,
        "prev_link": page_link(flt.page - 1) if flt.page > 1 else None,
        "states": STATES, "kinds": KINDS, "sent": form_int(request.query.get("sent")),
    })
