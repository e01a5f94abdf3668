"""Lists of conversations for one person, newest first, with unread counts and filters.

One SQL statement per page (the unread count is a correlated subquery on the
(conversation_id, created_at) index), written once with "?" placeholders for both backends.
Unread means: written after the person last opened the conversation, not by them, and (for a
guardian or student) written by the staff (from the web, the API, or answering by e-mail or SMS),
since they never see other families' replies.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections

from gateway.db import as_datetime, dialect, like_pattern, placeholders

PER_PAGE = 50
# A message of `m` in conversation `c` written by the school: outbound, or an inbound reply whose
# author is staff of that school (a teacher answering from their phone or mail client).
FROM_STAFF = ("(m.direction = 'outbound' OR EXISTS (SELECT 1 FROM membership sm WHERE sm.school_id = c.school_id "
              "AND sm.user_id = m.author_id AND sm.role = 'staff'))")


@dataclass(frozen=True)
class ListFilter:
    state: str = ""          # open | closed | "" (both)
    kind: str = ""           # conversation | announcement | newsletter | ""
    unread_only: bool = False
    search: str = ""         # in the subject
    page: int = 1


@dataclass
class ListedConversation:
    id: int
    kind: str
    subject: str
    state: str
    school_id: int
    last_message_at: datetime | None
    unread: int
    participant: bool
    preview: str = ""
    people: int = 0




async def list_conversations(user_id: int, flt: ListFilter, *, family: bool,
                             all_of_schools: list[int] | None = None) -> tuple[list[ListedConversation], bool]:
    """One page of conversations and whether there is a next page.

    `family`: count as unread only the staff's messages (a guardian's or student's list).
    `all_of_schools`: every conversation of these schools (a staff admin's "all" view), not only
    those the person takes part in.
    """
    args: list[Any] = []
    staff_only = f" AND {FROM_STAFF}" if family else ""
    unread = (f"CASE WHEN p.id IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM message m WHERE m.conversation_id = c.id "
              f"AND (p.last_read_at IS NULL OR m.created_at > p.last_read_at) "
              f"AND (m.author_id IS NULL OR m.author_id <> ?){staff_only}) END")
    args.append(user_id)
    if all_of_schools:
        marks = ",".join("?" for _ in all_of_schools)
        source = "conversation c LEFT JOIN participant p ON p.conversation_id = c.id AND p.user_id = ?"
        args.append(user_id)
        where = [f"c.school_id IN ({marks})"]
        args.extend(all_of_schools)
    else:
        source = "conversation c JOIN participant p ON p.conversation_id = c.id AND p.user_id = ?"
        args.append(user_id)
        where = ["1=1"]
    if flt.state:
        where.append("c.state = ?")
        args.append(flt.state)
    if flt.kind:
        where.append("c.kind = ?")
        args.append(flt.kind)
    if flt.search:
        where.append("LOWER(c.subject) LIKE ? ESCAPE '\\'")
        args.append(like_pattern(flt.search[:100]))
    sql = (f"SELECT c.id AS id, c.kind AS kind, c.subject AS subject, c.state AS state, c.school_id AS school_id, "
           f"c.last_message_at AS last_message_at, p.id AS pid, {unread} AS unread "
           f"FROM {source} WHERE {' AND '.join(where)}")
    if flt.unread_only:
        sql = f"SELECT * FROM ({sql}) t WHERE t.unread > 0"
        order = "t.last_message_at DESC, t.id DESC"
    else:
        order = "c.last_message_at DESC, c.id DESC"
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    args += [PER_PAGE + 1, (max(flt.page, 1) - 1) * PER_PAGE]
    conn = connections.get("default")
    _count, rows = await conn.execute_query(placeholders(dialect() == "postgres", sql), args)
    found = [ListedConversation(
        id=r["id"], kind=r["kind"], subject=r["subject"], state=r["state"], school_id=r["school_id"],
        last_message_at=as_datetime(r["last_message_at"]), unread=int(r["unread"] or 0),
        participant=r["pid"] is not None) for r in rows]
    more = len(found) > PER_PAGE
    found = found[:PER_PAGE]
    await _add_previews(found, user_id, family=family)
    return found, more


async def _add_previews(items: list[ListedConversation], user_id: int, *, family: bool) -> None:
    """The last message each person may see, and how many others take part."""
    if not items:
        return
    conn = connections.get("default")
    postgres = dialect() == "postgres"
    marks = ",".join("?" for _ in items)
    ids = [item.id for item in items]
    visible = f" AND ({FROM_STAFF} OR m.author_id = ?)" if family else ""
    sql = (f"SELECT conversation_id, body FROM message WHERE id IN (SELECT MAX(m.id) FROM message m "
           f"JOIN conversation c ON c.id = m.conversation_id "
           f"WHERE m.conversation_id IN ({marks}){visible} GROUP BY m.conversation_id)")
    _n, rows = await conn.execute_query(placeholders(postgres, sql), ids + ([user_id] if family else []))
    previews = {r["conversation_id"]: r["body"] for r in rows}
    sql = (f"SELECT conversation_id, COUNT(*) AS n FROM participant WHERE conversation_id IN ({marks}) "
           f"AND user_id <> ? GROUP BY conversation_id")
    _n, rows = await conn.execute_query(placeholders(postgres, sql), ids + [user_id])
    people = {r["conversation_id"]: int(r["n"]) for r in rows}
    for item in items:
        body = " ".join((previews.get(item.id) or "").split())
        item.preview = body[:140] + ("…" if len(body) > 140 else "")
        item.people = people.get(item.id, 0)
