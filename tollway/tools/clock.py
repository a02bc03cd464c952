"""The ``clock`` built-in: the current date and time in a named IANA time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tollway.tools.config import ClockConfig
from tollway.tools.registry import Tool, ToolError

__all__ = ["ClockSource", "now_in"]


def _zone(name: str) -> ZoneInfo:
    if not name or len(name) > 64:
        raise ToolError("a time zone name such as 'Europe/Paris' is required")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None


def now_in(zone_name: str, now: datetime | None = None) -> dict[str, Any]:
    """The current (or given, timezone-aware) moment described in ``zone_name``."""
    zone = _zone(zone_name)
    moment = (now or datetime.now(UTC)).astimezone(zone)
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return {
        "timezone": zone.key,
        "iso": moment.isoformat(timespec="seconds"),
        "date": moment.date().isoformat(),
        "time": moment.strftime("%H:%M:%S"),
        "weekday": moment.strftime("%A"),
        "utc_offset": f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}",
        "abbreviation": moment.tzname(),
        "unix": int(moment.timestamp()),
    }


class ClockSource:
    """Provides the ``clock`` tool."""

    def __init__(
        self,
        config: ClockConfig,
        default_timeout: float,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        _zone(config.default_zone)  # a bad default fails at start, not per call
        self.config = config
        self.timeout = config.timeout or default_timeout
        self._now = now

    async def start(self) -> list[Tool]:
        return [Tool(
            name="clock",
            description="The current date and time in a time zone (IANA name, e.g. "
            f"'America/New_York'; default {self.config.default_zone}).",
            parameters={
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "IANA time zone name, e.g. 'Europe/Paris', 'UTC'",
                    }
                },
                "additionalProperties": False,
            },
            call=self.call,
            price_usd=self.config.price_usd,
            timeout=self.timeout,
        )]

    async def call(self, arguments: dict[str, Any]) -> Any:
        zone = arguments.get("timezone") or self.config.default_zone
        if not isinstance(zone, str):
            raise ToolError("'timezone' must be a string")
        return now_in(zone.strip(), self._now() if self._now else None)

    async def close(self) -> None:
        return None
