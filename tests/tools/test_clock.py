"""The clock: the current time in a named zone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tollway.tools.clock import ClockSource, now_in
from tollway.tools.config import ClockConfig
from tollway.tools.registry import ToolError


def test_fixed_moment_in_two_zones() -> None:
    moment = datetime(2024, 7, 1, 12, 30, tzinfo=UTC)
    paris = now_in("Europe/Paris", moment)
    assert paris["iso"] == "2024-07-01T14:30:00+02:00"
    assert paris["utc_offset"] == "+02:00" and paris["weekday"] == "Monday"
    ny = now_in("America/New_York", moment)
    assert ny["time"] == "08:30:00" and ny["utc_offset"] == "-04:00"
    assert ny["unix"] == paris["unix"] == int(moment.timestamp())
    assert now_in("Asia/Kolkata", moment)["utc_offset"] == "+05:30"


def test_now_is_now() -> None:
    result = now_in("UTC")
    stamp = datetime.fromisoformat(result["iso"])
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 5


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", ""])
def test_unknown_zone(zone: str) -> None:
    with pytest.raises(ToolError):
        now_in(zone)


def test_tool_uses_default_zone() -> None:
    async def main() -> None:
        moment = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
        source = ClockSource(ClockConfig(default_zone="Asia/Tokyo"), 5.0, now=lambda: moment)
        [tool] = await source.start()
        assert (await tool.call({}))["iso"] == "2024-01-01T09:00:00+09:00"
        assert (await tool.call({"timezone": "UTC"}))["timezone"] == "UTC"

    asyncio.run(main())


def test_bad_default_zone_fails_at_start() -> None:
    with pytest.raises(ToolError):
        ClockSource(ClockConfig(default_zone="Nowhere/Land"), 5.0)
