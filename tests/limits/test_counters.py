"""The counters' invariants, as property tests, on the in-process store and on real Redis.

Redis runs at 127.0.0.1:6379 (skipped, with the reason, when none answers); each
example uses fresh bucket names so examples do not share state.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.limits.conftest import redis_url
from tollway.limits.counters import Check, LocalCounters
from tollway.limits.headers import duration
from tollway.limits.redis_counters import LimitStoreUnavailable, RedisCounters

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh(scope: str = "key", **limits: int | None) -> Check:
    return Check(f"test:{secrets.token_hex(6)}", scope, limits.get("rpm"), limits.get("tpm"),
                 limits.get("concurrent"))  # fmt: skip


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> object:
    if request.param == "local":
        return lambda: LocalCounters(Clock())
    url = redis_url()
    return lambda: RedisCounters(url)


async def _burst(counters: object, checks: list[Check], n: int, tokens: int = 0) -> list[bool]:
    out = []
    for i in range(n):
        decision = await counters.acquire(checks, tokens, f"req_{i}")  # type: ignore[attr-defined]
        out.append(decision.refused is None)
    return out


@SETTINGS
@given(rpm=st.integers(1, 40), extra=st.integers(0, 10))
def test_rpm_burst_admits_exactly_the_limit(store: object, rpm: int, extra: int) -> None:
    async def go() -> list[bool]:
        counters = store()  # type: ignore[operator]
        try:
            return await _burst(counters, [fresh(rpm=rpm)], rpm + extra)
        finally:
            await counters.close()

    admitted = asyncio.run(go())
    assert admitted == [True] * rpm + [False] * extra  # none refused before, none after


@SETTINGS
@given(limit=st.integers(1, 10), extra=st.integers(0, 5))
def test_concurrency_never_exceeds_and_release_frees(store: object, limit: int, extra: int) -> None:
    async def go() -> None:
        counters = store()  # type: ignore[operator]
        check = fresh(concurrent=limit)
        try:
            want = [True] * limit + [False] * extra
            assert await _burst(counters, [check], limit + extra) == want
            for i in range(limit):
                await counters.release([check], f"req_{i}", 0)
            assert await _burst(counters, [check], limit + 1) == [True] * limit + [False]
        finally:
            await counters.close()

    asyncio.run(go())


@SETTINGS
@given(rpm=st.integers(1, 5))
def test_all_or_nothing_across_scopes(store: object, rpm: int) -> None:
    """A refusal by one scope debits no other scope."""

    async def go() -> None:
        counters = store()  # type: ignore[operator]
        key, account = fresh(rpm=100), fresh("account", rpm=rpm)
        try:
            assert await _burst(counters, [key, account], rpm + 3) == [True] * rpm + [False] * 3
            decision = await counters.acquire([key], 0, "x")
            assert decision.requests is not None
            assert decision.requests.remaining == 100 - rpm - 1  # the refused ones took nothing
        finally:
            await counters.close()

    asyncio.run(go())


@SETTINGS
@given(tpm=st.integers(10, 1000), prompt=st.integers(1, 50), output=st.integers(0, 2000))
def test_tpm_takes_prompt_then_output(store: object, tpm: int, prompt: int, output: int) -> None:
    async def go() -> None:
        counters = store()  # type: ignore[operator]
        check = fresh(tpm=tpm)
        try:
            first = await counters.acquire([check], prompt, "a")
            assert (first.refused is None) == (prompt <= tpm)
            if first.refused is not None:
                assert first.refused[1] == "tpm" and first.retry_after > 0
                return
            await counters.release([check], "a", output)
            left = tpm - prompt - output
            second = await counters.acquire([check], prompt, "b")
            if left < prompt - 0.5:  # (Redis refills a little in between)
                assert second.refused is not None and second.refused[1] == "tpm"
            elif left >= prompt + 1:
                assert second.refused is None
        finally:
            await counters.close()

    asyncio.run(go())


def test_local_bucket_refills_at_the_limit_rate() -> None:
    clock = Clock()
    counters = LocalCounters(clock)
    check = fresh(rpm=60)
    assert all(asyncio.run(_burst(counters, [check], 60)))
    refused = counters.acquire_now([check], 0, "x")
    assert refused.refused is not None and abs(refused.retry_after - 1.0) < 1e-9
    clock.now += 1.0
    assert counters.acquire_now([check], 0, "y").refused is None
    assert counters.acquire_now([check], 0, "z").refused is not None
    clock.now += 60
    full = counters.acquire_now([check], 0, "w")
    assert full.requests is not None and full.requests.remaining == 59
    assert abs(full.requests.reset_seconds - 1.0) < 1e-9


def test_redis_down_allow_falls_back_deny_refuses() -> None:
    async def go() -> None:
        dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
        allow = RedisCounters(dead, timeout=0.2)
        check = fresh(rpm=2, concurrent=5)
        assert await _burst(allow, [check], 3) == [True, True, False]  # the local limiter
        assert allow.errors == 3
        await allow.release([check], "req_0", 0)
        assert allow.fallback.in_flight(check.bucket) == 1  # req_1 still holds its slot
        deny = RedisCounters(dead, on_store_error="deny", timeout=0.2)
        with pytest.raises(LimitStoreUnavailable):
            await deny.acquire([check], 0, "x")

    asyncio.run(go())


@given(st.floats(0, 10**6, allow_nan=False))
def test_duration_format(seconds: float) -> None:
    text = duration(seconds)
    assert text.endswith(("ms", "s"))
    if seconds >= 60:
        assert "m" in text and not text.endswith("ms")


def test_duration_examples() -> None:
    assert duration(0.02) == "20ms"
    assert duration(1) == "1s"
    assert duration(6.51) == "6.6s"
    assert duration(360) == "6m0s"
    assert duration(3723) == "1h2m3s"


@pytest.mark.redis
def test_redis_scripts_reloaded_after_script_flush() -> None:
    """EVALSHA answered NOSCRIPT (Redis restarted or flushed): EVAL, and the counts go on."""
    import redis as redis_py

    url = redis_url()

    async def go() -> None:
        counters = RedisCounters(url)
        check = fresh(rpm=2, tpm=100, concurrent=1)
        try:
            assert (await counters.acquire([check], 5, "a")).refused is None
            redis_py.Redis.from_url(url).script_flush()
            await counters.release([check], "a", 10)  # queued, not awaited
            # no wait: a command queued after the release runs after it, scripts flushed or not
            redis_py.Redis.from_url(url).script_flush()
            second = await counters.acquire([check], 5, "b")
            assert second.refused is None  # the slot was released through EVAL
            assert second.tokens is not None and second.tokens.remaining <= 100 - 5 - 10 - 5 + 1
            assert (await counters.acquire([check], 5, "c")).refused[1] == "rpm"  # type: ignore[index]
        finally:
            await counters.close()

    asyncio.run(go())
