"""Phase ``limits``: the CPU tenant controls add per request (issue #14: ≤ 60 µs with Redis).

Scenarios b (non-streaming, concurrency 64) and c10 (streaming) run three times
against a fresh tollway with billing on: limits off; rate limits on (Redis: rpm,
tpm and concurrency on the key and its account, all far above the load, so every
request runs the Lua script at admission and at settlement); and rate limits plus a
spend cap (the cap's counters ride in the reservation's SQL transaction). The
figure is the server's CPU per request, on minus off. Opt-in:
``python -m bench --scenarios limits`` (``--redis URL``, default 127.0.0.1:6379).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.report import Row

__all__ = ["limit_rows", "phase_limits"]

HIGH = 10**9
RATES = {"rpm": HIGH, "tpm": HIGH, "max_concurrent": 10**6}


def _configs(base: dict[str, Any], redis: str) -> dict[str, dict[str, Any]]:
    billing = {**base, "billing": {"enabled": True}}
    rates = {**billing, "redis": redis,
             "limits": {"defaults": RATES, "accounts": {"bench": RATES}}}  # fmt: skip
    capped = {**rates, "limits": {"defaults": {**RATES, "spend_cap_usd": "1000000",
                                               "spend_period": "monthly"},
                                  "accounts": {"bench": RATES}}}  # fmt: skip
    return {"off": billing, "rates": rates, "rates+cap": capped}


def _redis_answers(url: str) -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        return f"no Redis at {url}: {exc}"
    return None


async def phase_limits(bench: Any) -> None:
    """Run b and c10 with limits off / rate limits / rate limits + spend cap."""
    entry: dict[str, Any] = {}
    bench.results["scenarios"]["limits"] = entry
    redis = bench.args.redis
    problem = _redis_answers(redis)
    if problem:
        entry["skipped"] = problem
        bench.note(f"limits: skipped, {problem}")
        return
    for label, config in _configs(dict(bench.features_off), redis).items():
        figures: dict[str, Any] = {}
        async with bench.tollway(f"limits-{label}", extra_config=config) as target:
            for name in ("b", "c10"):
                # at most 5,000 requests: a load generator's result line of 8,000 latency
                # samples (> 64 KiB) sometimes reaches the bench cut at 64 KiB
                sc = bench.table[name]
                sc = replace(sc, requests=min(sc.requests, 5000))
                figures[name] = await bench.run(sc, target, label=f"limits {label}:")
        entry[label] = figures
    off = entry["off"]
    for label in ("rates", "rates+cap"):
        entry[f"added_cpu_us_{label}"] = {
            name: _diff(off[name].get("cpu_per_req_us"), entry[label][name].get("cpu_per_req_us"))
            for name in ("b", "c10")
        }


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 1)


def limit_rows(results: dict[str, Any]) -> list[Row]:
    entry = results["scenarios"].get("limits") or {}
    out: list[Row] = []
    if "off" not in entry:
        return out
    for name in ("b", "c10"):
        off = entry["off"][name].get("cpu_per_req_us")
        for label, target in (("rates", "added ≤ 60"), ("rates+cap", "")):
            on = entry[label][name].get("cpu_per_req_us")
            diff = _diff(off, on)
            ok = None if not target or diff is None else diff <= 60
            out.append(Row(f"limits:{name}", f"CPU µs/req, {label} vs off", off, on, target, ok))
    return out
