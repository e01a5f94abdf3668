"""Quiet hours: non-urgent SMS waits until the school's morning (DESIGN section 5)."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


def quiet_until(now: datetime, tz_name: str, start_minute: int, end_minute: int) -> datetime | None:
    """When the quiet window around `now` ends (UTC), or None if `now` is not in quiet hours.

    The window is [start, end) in the school's local time and may wrap midnight (21:00–07:00).
    Equal start and end means no quiet hours. Local wall-clock arithmetic goes through zoneinfo, so
    a DST change inside the window still ends it at 07:00 local.
    """
    if start_minute == end_minute:
        return None
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    if start_minute < end_minute:
        quiet = start_minute <= minute < end_minute
        end_day = local.date()
    else:
        quiet = minute >= start_minute or minute < end_minute
        end_day = local.date() + timedelta(days=1) if minute >= start_minute else local.date()
    if not quiet:
        return None
    end_local = datetime.combine(end_day, time(end_minute // 60, end_minute % 60), tzinfo=tz)
    return end_local.astimezone(timezone.utc)
