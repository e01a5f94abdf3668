"""A conversation as one person sees it: its messages, badges and (for staff) deliveries.

Shared by the thread page and its live stream, so a message added live looks exactly like one the
page rendered. Reads use `values()` rather than model objects: a thread of 500 messages is one
query for the messages, one for their deliveries and one for names.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from babel.dates import get_date_format, get_time_format

from gateway.directory.models import Membership, Role, User
from gateway.i18n import babel_locale
from gateway.threads.access import ThreadAccess
from gateway.threads.models import Delivery, Message
from gateway.web import labels


@dataclass
class DeliveryLine:
    id: int
    recipient: str
    channel: str
    status: str
    reason: str


@dataclass
class ThreadItem:
    id: int
    author: str
    author_is_staff: bool
    mine: bool
    inbound: bool
    origin: str
    routed_by: str | None
    sender_unverified: bool
    urgent: bool
    body: str
    created_at: datetime
    when: str
    deliveries: list[DeliveryLine] = field(default_factory=list)

    @property
    def delivery_summary(self) -> list[tuple[str, str, int]]:
        """(state, tone, count) for the staff view's one-line summary."""
        counts = Counter(d.status for d in self.deliveries)
        return [(labels.status_name(s), labels.status_tone(s), n) for s, n in sorted(counts.items())]


def clock(lang: str, timezone_name: str) -> Callable[[datetime], str]:
    """Format times in the reader's language and the school's time zone (patterns parsed once)."""
    locale = babel_locale(lang)
    date_pattern, time_pattern = get_date_format("medium", locale), get_time_format("short", locale)
    try:
        tz: Any = ZoneInfo(timezone_name)
    except (ValueError, KeyError):
        tz = timezone.utc
    days: dict[Any, str] = {}

    def fmt(moment: datetime) -> str:
        local = moment.astimezone(tz)
        day = days.get(local.date())
        if day is None:
            day = days[local.date()] = date_pattern.apply(local, locale)
        return f"{day} {time_pattern.apply(local, locale)}"

    return fmt


async def thread_items(access: ThreadAccess, lang: str, timezone_name: str, *, after_id: int = 0,
                       delivery_ids: list[int] | None = None) -> list[ThreadItem]:
    """The messages `access` may see, oldest first (only those after `after_id`, or those of `delivery_ids`)."""
    query = Message.filter(conversation_id=access.conversation.id)
    if delivery_ids is not None:
        ids = await Delivery.filter(id__in=delivery_ids).values_list("message_id", flat=True)
        query = query.filter(id__in=list(set(ids)))
    elif after_id:
        query = query.filter(id__gt=after_id)
    rows = await query.order_by("id").values("id", "author_id", "body", "origin", "direction", "routed_by",
                                             "sender_unverified", "urgent", "created_at")
    if not rows:
        return []
    school_id = access.conversation.school_id
    author_ids = {r["author_id"] for r in rows if r["author_id"]}
    staff_ids = set(await Membership.filter(school_id=school_id, role=Role.STAFF, user_id__in=list(author_ids))
                    .values_list("user_id", flat=True))
    rows = [r for r in rows if access.may_see(r["author_id"], r["author_id"] in staff_ids,
                                              _value(r["direction"]) == "inbound")]
    deliveries: dict[int, list[dict[str, Any]]] = {}
    if access.sees_everything:
        for d in await Delivery.filter(message_id__in=[r["id"] for r in rows]).order_by("id").values(
                "id", "message_id", "recipient_id", "channel", "status", "error_code", "error_reason"):
            deliveries.setdefault(d["message_id"], []).append(d)
    user_ids = author_ids | {d["recipient_id"] for ds in deliveries.values() for d in ds}
    names = dict(await User.filter(id__in=list(user_ids)).values_list("id", "name")) if user_ids else {}
    fmt = clock(lang, timezone_name)
    raw_errors = access.staff is not None and access.staff.is_admin
    items = []
    for r in rows:
        items.append(ThreadItem(
            id=r["id"], author=names.get(r["author_id"], "") if r["author_id"] else "",
            author_is_staff=r["author_id"] in staff_ids, mine=r["author_id"] == access.user_id,
            inbound=_value(r["direction"]) == "inbound", origin=_value(r["origin"]),
            routed_by=_value(r["routed_by"]) if r["routed_by"] else None,
            sender_unverified=r["sender_unverified"], urgent=r["urgent"], body=r["body"],
            created_at=r["created_at"], when=fmt(r["created_at"]),
            deliveries=[_line(d, names, raw_errors) for d in deliveries.get(r["id"], [])],
        ))
    return items


def _line(d: dict[str, Any], names: dict[int, str], raw_errors: bool) -> DeliveryLine:
    """A delivery as staff see it. A provider's own error text often quotes the address, so only
    admins (who see addresses in the directory anyway) get it; other staff see its code."""
    status = _value(d["status"])
    if status == "suppressed":
        reason = labels.reason_name(d["error_reason"])
    elif raw_errors:
        reason = d["error_reason"] or d["error_code"] or ""
    else:
        reason = d["error_code"] or ""
    return DeliveryLine(d["id"], names.get(d["recipient_id"], ""), d["channel"], status, reason)


def _value(value: Any) -> str:
    return value.value if hasattr(value, "value") else str(value)
