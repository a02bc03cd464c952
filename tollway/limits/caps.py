"""Spend-cap periods: which period a moment falls in and when it resets (UTC).

Daily from midnight, weekly from Monday, monthly from the 1st, total from ever. The
counters themselves are SQL (``tollway.storage.sql_caps``), held by billing's
reservation for the caps in ``ctx.spend_caps``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tollway.limits.config import Period
from tollway.storage.sql_caps import Cap, CapState

__all__ = ["Cap", "CapState", "period_bounds"]


def period_bounds(period: Period, now: float) -> tuple[float, float | None]:
    """(start, reset) of the period containing ``now``; ``total`` never resets."""
    if period == "total":
        return 0.0, None
    at = datetime.fromtimestamp(now, UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()
