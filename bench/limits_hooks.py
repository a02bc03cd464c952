"""The CPU tenant controls add per request, measured on their hooks alone (precise where the
whole-server figure of ``bench/limits.py`` drowns in noise on a shared machine).

``python -m bench.limits_hooks [--redis URL] [--requests N]``: runs the limits
admission and settlement hooks for N requests (a key and its account with rpm, tpm and
concurrency limits, so every request runs the acquire and release scripts), one at a
time and 64 at a time (as under load: their Redis commands share writes), and prints
this process's CPU per request (user + system, ``getrusage``), with the in-process
counters for comparison. The Redis server's own CPU is not counted (another process).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from typing import Any

from tollway.auth import AuthResult
from tollway.chunks import Usage
from tollway.context import RequestContext
from tollway.limits.config import LimitsConfig, LimitSpec
from tollway.limits.counters import LocalCounters
from tollway.limits.feature import LimitsFeature
from tollway.limits.rules import Rules
from tollway.providers.base import ChatRequest
from tollway.storage.base import Account

__all__ = ["measure"]

RATES = {"rpm": 10**9, "tpm": 10**12, "max_concurrent": 10**6}
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark, briefly please."}]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _feature(redis: str | None, off: bool = False) -> LimitsFeature:
    from tollway.config import parse_settings

    feature = LimitsFeature(parse_settings({"redis": redis, "billing": {"enabled": False}}))
    config = LimitsConfig(defaults=LimitSpec(**RATES), accounts={"bench": LimitSpec(**RATES)})
    feature.rules = Rules(LimitsConfig() if off else config)
    if redis:
        from tollway.limits.redis_counters import RedisCounters

        feature.counters = RedisCounters(redis)
    else:
        feature.counters = LocalCounters()
    return feature


def _ctx(i: int, auth: AuthResult) -> RequestContext:
    ctx = RequestContext(request_id=f"req_bench_{i}")
    ctx.account, ctx.account_id, ctx.key_id = auth, auth.account_id, auth.key_id
    ctx.requested_model = "bench-model"
    ctx.request = ChatRequest(body={}, model="bench-model", stream=False, include_usage=False,
                              messages=MESSAGES, tools=None, max_output_tokens=None,
                              extensions={})  # fmt: skip
    return ctx


async def measure(redis: str | None, requests: int, batch: int, off: bool = False) -> float:
    """CPU µs per request (admit + settle) in this process (``off``: no limit applies, so
    this is the harness: the context, the tasks and the hooks' early return)."""
    feature = _feature(redis, off)
    account = Account("acct_bench", "bench", 0, 0, 0, 0)
    auth = AuthResult("acct_bench", "key_bench", "bench", account)
    usage = Usage(prompt_tokens=10, completion_tokens=20)

    async def one(i: int) -> None:
        ctx = _ctx(i, auth)
        await feature.admit(ctx)
        ctx.usage = usage
        await feature.settle(ctx)

    for i in range(200):  # warm: script cached, connection open, plan resolved
        await one(i)
    started = _cpu()
    for start in range(0, requests, batch):
        await asyncio.gather(*(one(i) for i in range(start, min(start + batch, requests))))
    spent = _cpu() - started
    await feature.counters.close()
    return spent / requests * 1e6


async def measure_caps(requests: int, caps: bool) -> float:
    """CPU µs per reservation + settlement on SQLite, with or without two spend caps."""
    import tempfile

    from tollway.billing.ledger import create_account
    from tollway.limits.caps import Cap, period_bounds
    from tollway.storage import open_storage
    from tollway.storage.base import NewEntry

    with tempfile.TemporaryDirectory() as tmp:
        store = await open_storage(f"sqlite:///{tmp}/caps.db")
        try:
            account = await create_account(store, "bench", credit_usd="1000000")
            start, reset = period_bounds("monthly", time.time())
            held = (Cap("key", "key_bench", "monthly", start, reset, 10**14),
                    Cap("account", account.id, "monthly", start, reset, 10**14)) if caps else ()

            async def one(i: int) -> None:
                out = await store.reserve(account.id, f"req_{caps}_{i}", "inst", 1000, caps=held)
                assert out.reservation is not None
                debit = NewEntry(account_id=account.id, kind="debit", amount_micros=-500,
                                 request_id=f"req_{caps}_{i}", total_cost_micros=500,
                                 base_cost_micros=500, platform_fee_micros=0)  # fmt: skip
                await store.settle(out.reservation.id, debit, capped=bool(held))

            for i in range(100):
                await one(-1 - i)
            started = _cpu()
            for start_at in range(0, requests, 64):
                await asyncio.gather(*(one(i) for i in range(start_at,
                                                           min(start_at + 64, requests))))
            return (_cpu() - started) / requests * 1e6
        finally:
            await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.limits_hooks", description=__doc__)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--requests", type=int, default=20000)
    args = p.parse_args(argv)
    import uvloop

    out: dict[str, Any] = {}
    for batch in (1, 64):
        out[f"no limit (harness), {batch} at a time"] = uvloop.run(
            measure(None, args.requests, batch, off=True))
    for label, redis in (("in-process", None), ("redis", args.redis)):
        for batch in (1, 64):
            out[f"{label}, {batch} at a time"] = uvloop.run(measure(redis, args.requests, batch))
    caps_requests = max(args.requests // 5, 200)
    out["SQLite reserve+settle, no cap, 64 at a time"] = uvloop.run(
        measure_caps(caps_requests, False))
    out["SQLite reserve+settle, 2 caps, 64 at a time"] = uvloop.run(
        measure_caps(caps_requests, True))
    for name, us in out.items():
        print(f"{name:<44} {us:7.1f} µs CPU per request")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
