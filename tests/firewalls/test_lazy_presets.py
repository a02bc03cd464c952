"""Presets are compiled when first used (or at start when the configuration names them);
configured policies at start, so a bad one stops the gateway there."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tollway.assembly import create_app
from tollway.config import parse_settings
from tollway.firewalls import FirewallSet, UnknownFirewall
from tollway.firewalls.config import PRESETS
from tollway.firewalls.plugin import Firewalls, FirewallsPlugin


def test_a_preset_is_compiled_on_first_use_and_an_unknown_name_refused_at_once() -> None:
    fs = FirewallSet.from_config({}, preload=["redact-pii", "no-such-policy"])
    assert fs.ready("redact-pii") and not fs.ready("strict-block") and not fs.ready("monitor")
    assert fs.names == ["monitor", "redact-pii", "strict-block"]
    assert fs.ready("nope")  # nothing to compile: get() raises at once
    with pytest.raises(UnknownFirewall):
        fs.get("nope")
    policy = fs.get("strict-block")
    assert fs.ready("strict-block") and fs.get("strict-block") is policy
    assert policy.config is PRESETS["strict-block"]


def test_a_configured_policy_overrides_its_preset_and_is_compiled_at_start() -> None:
    settings = parse_settings({"firewalls": {"monitor": {"detectors": {"email": "block"}}}})
    fs = FirewallSet.from_config(settings.firewalls)
    assert fs.ready("monitor") and fs.get("monitor").config is settings.firewalls["monitor"]


def test_threads_compiling_one_preset_get_one_policy() -> None:
    fs = FirewallSet.from_config({})
    got: list[object] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        got.append(fs.get("monitor"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and all(p is got[0] for p in got)


def test_the_configured_defaults_are_compiled_at_start(tmp_path: object) -> None:
    plugin = FirewallsPlugin()
    settings = parse_settings({
        "database": f"sqlite:///{tmp_path}/t.db", "billing": {"enabled": False},
        "defaults": {"firewall": "redact-pii"},
        "key_defaults": {"key_1": {"firewall": "monitor"}},
    })  # fmt: skip
    create_app(settings, [plugin])
    assert plugin.feature is not None
    fs = plugin.feature.firewalls
    assert fs.ready("redact-pii") and fs.ready("monitor") and not fs.ready("strict-block")


def test_requests_meeting_one_uncompiled_preset_share_one_compile() -> None:
    """Not a thread each: one compile in one thread, awaited by all; a request cancelled
    meanwhile (its client gone) leaves the compile running for the others."""
    main = threading.get_ident()
    threads: list[int] = []

    class Recording(FirewallSet):
        def get(self, name: str) -> Any:
            if threading.get_ident() != main:
                threads.append(threading.get_ident())
            return super().get(name)

    fs = Recording({}, PRESETS)
    fw = Firewalls(fs, None)

    async def scenario() -> list[Any]:
        jobs = [asyncio.ensure_future(fw._compiled("strict-block")) for _ in range(8)]
        await asyncio.sleep(0)
        jobs[0].cancel()
        got = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(got[0], asyncio.CancelledError)
        assert not fw._compiling  # done: the next first use would start afresh
        return got[1:]

    got = asyncio.run(scenario())
    assert len(threads) == 1 and fs.ready("strict-block")
    assert all(p is fs.get("strict-block") for p in got)
