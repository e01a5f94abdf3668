"""Quiet hours in the school's time zone (default 21:00–07:00)."""
from datetime import datetime, timezone

from gateway.threads.quiet_hours import quiet_until

LA = "America/Los_Angeles"
NINE_PM, SEVEN_AM = 21 * 60, 7 * 60


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_daytime_is_not_quiet():
    assert quiet_until(utc(2025, 3, 7, 20, 0), LA, NINE_PM, SEVEN_AM) is None  # 12:00 in LA


def test_late_evening_waits_until_seven_next_morning():
    # 2025-03-07 22:30 PST = 2025-03-08 06:30 UTC; 07:00 PST on the 8th = 15:00 UTC
    assert quiet_until(utc(2025, 3, 8, 6, 30), LA, NINE_PM, SEVEN_AM) == utc(2025, 3, 8, 15, 0)


def test_early_morning_waits_until_seven_the_same_day():
    # 05:00 PST on the 7th = 13:00 UTC
    assert quiet_until(utc(2025, 3, 7, 13, 0), LA, NINE_PM, SEVEN_AM) == utc(2025, 3, 7, 15, 0)


def test_the_window_end_is_exclusive():
    assert quiet_until(utc(2025, 3, 7, 15, 0), LA, NINE_PM, SEVEN_AM) is None


def test_dst_change_inside_the_window_still_ends_at_seven_local():
    # DST starts 2025-03-09 02:00 in LA: 07:00 PDT = 14:00 UTC (not 15:00)
    assert quiet_until(utc(2025, 3, 9, 8, 0), LA, NINE_PM, SEVEN_AM) == utc(2025, 3, 9, 14, 0)


def test_equal_start_and_end_means_no_quiet_hours():
    assert quiet_until(utc(2025, 3, 8, 6, 30), LA, 0, 0) is None


def test_a_window_inside_one_day():
    # 12:00–13:00 UTC lunch-time silence
    assert quiet_until(utc(2025, 3, 7, 12, 30), "UTC", 12 * 60, 13 * 60) == utc(2025, 3, 7, 13, 0)
