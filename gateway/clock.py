"""The one clock: timezone-aware UTC (tortoise stores aware datetimes; naive ones would compare wrong)."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
