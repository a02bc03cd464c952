"""How fast the dashboard's pages get their data on a big database (issue 17 item 5).

Fills a fresh database with N traces and N ledger debits spread over 30 days
(50 accounts, 8 models), rolls them up (timed: a one-off catch-up), then times
each page's queries (median of 3 runs):
overview (24 h by hour, 7 d by hour, 30 d by day; all accounts and one account),
an account page (ledger page + keys), the ledger filtered by kind, trace search
and one trace. Not a test: figures for the README.

Run: ``python benchmarks/dashboard_queries.py [--rows 1000000] [--dsn sqlite:///PATH |
postgresql://…]`` (default: a temporary SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from tollway.dashboard.data import overview  # noqa: E402
from tollway.dashboard.rollup import Rollups  # noqa: E402
from tollway.storage import open_storage  # noqa: E402
from tollway.tracing.store import TraceQuery, open_trace_store  # noqa: E402

DAYS = 30
ACCOUNTS = 50
MODELS = [f"model-{i}" for i in range(8)]


def _record(i: int, at: float, account: str, model: str, rng: random.Random) -> dict[str, Any]:
    status = 200 if rng.random() > 0.03 else 502
    attempts = [{"deployment": f"p/{model}", "outcome": "ok", "status": 200, "error": None,
                 "latency_ms": 80.0, "misconfigured": False}]
    if rng.random() < 0.05:
        attempts.insert(0, {"deployment": "p/other", "outcome": "error", "status": 503,
                            "error": "overloaded", "latency_ms": 12.0, "misconfigured": False})
    ttft = rng.uniform(80, 900)
    return {"id": f"req_{i:032x}", "client_request_id": None, "object": "trace",
            "received_at": at, "account_id": account, "key_id": "key_x", "model": model,
            "deployment": f"p/{model}", "status": status, "attempts": attempts,
            "timings": {"admitted_ms": 1.0, "first_token_ms": ttft, "last_token_ms": ttft + 900,
                        "total_ms": ttft + 901, "ttft_ms": ttft,
                        "output_tokens_per_second": 60.0},
            "usage": {"prompt_tokens": 120, "completion_tokens": 55, "total_tokens": 175},
            "cost": {"total_cost_usd": "0.000450"}, "firewall_verdicts": [], "tool_calls": []}


async def fill(dsn: str, rows: int) -> list[str]:
    store = await open_storage(dsn)
    traces = await open_trace_store(dsn, migrate=False)
    accounts = [(await store.create_account(f"acct-{i}")).id for i in range(ACCOUNTS)]
    rng = random.Random(7)
    now = time.time()
    batch_traces: list[Any] = []
    batch_ledger: list[Any] = []
    started = time.perf_counter()
    for i in range(rows):
        at = now - rng.random() * DAYS * 86400
        account = accounts[int(rng.paretovariate(1.2)) % ACCOUNTS]
        model = rng.choice(MODELS)
        rec = _record(i, at, account, model, rng)
        batch_traces.append((rec["id"], at, account, "key_x", model, rec["deployment"],
                             rec["status"], orjson.dumps(rec).decode(), None, None))
        batch_ledger.append((account, "debit", -450, rec["id"], model, rec["deployment"],
                             120, 0, 55, 0, 450, 0, 450, False, at))
        if len(batch_traces) == 5000 or i == rows - 1:
            await traces.insert_many(batch_traces)
            async with store.db.transaction() as tx:
                for row in batch_ledger:  # direct rows: balances are not the point here
                    await tx.execute(
                        "INSERT INTO ledger_entries (account_id, kind, amount_micros, request_id,"
                        " model, deployment, prompt_tokens, cached_tokens, completion_tokens,"
                        " reasoning_tokens, base_cost_micros, platform_fee_micros,"
                        " total_cost_micros, partial, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", *row)
            batch_traces.clear()
            batch_ledger.clear()
    print(f"filled {rows:,} traces and debits in {time.perf_counter() - started:.0f} s")  # noqa: T201
    await store.db.execute("ANALYZE")  # planner statistics, as a live database has them
    await traces.close()
    await store.close()
    return accounts


async def timed(label: str, fn: Callable[[], Awaitable[Any]]) -> None:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        await fn()
        runs.append((time.perf_counter() - started) * 1000)
    print(f"  {label:<44} {statistics.median(runs):8.1f} ms")  # noqa: T201


async def measure(dsn: str, accounts: list[str]) -> None:
    store = await open_storage(dsn)
    traces = await open_trace_store(dsn, migrate=False)
    rollups = Rollups(store.db)
    one = accounts[1]  # the busiest account
    names = {a: a for a in accounts}
    try:
        for what in ("first refresh (sees the rows)", "catch-up refresh (rolls them up)",
                     "steady refresh"):
            started = time.perf_counter()
            await rollups.refresh()
            print(f"  rollup {what:<37} {(time.perf_counter() - started) * 1000:8.1f} ms")  # noqa: T201
        for label, range_name, bucket in (("24h", "24h", "hour"), ("7d", "7d", "hour"),
                                          ("30d", "30d", "day")):
            for who, account in (("all", None), ("one account", one)):
                async def go(r: str = range_name, b: str = bucket, a: Any = account) -> Any:
                    return await overview(store, traces, account_id=a, range_name=r,
                                          bucket_name=b, group="model", names=names,
                                          rollups=rollups)
                await timed(f"overview {label} by {bucket}, {who}", go)

        async def account_page() -> Any:
            await store.get_account(one)
            await store.ledger_filtered(one, limit=51)
            return await store.list_keys(one)
        await timed("account page (balance, ledger page, keys)", account_page)

        async def ledger_kind() -> Any:
            return await store.ledger_filtered(one, kinds=("credit",), limit=51)
        await timed("ledger filtered by kind (none match)", ledger_kind)

        async def search() -> Any:
            return await traces.find(TraceQuery(all_accounts=True, model="model-3",
                                                status_min=500, limit=50))
        await timed("trace search (model + status, all accounts)", search)

        async def own() -> Any:
            return await traces.find(TraceQuery(account_id=one, limit=50))
        await timed("trace list (one account)", own)

        async def get() -> Any:
            return await traces.get(f"req_{12345:032x}", None)
        await timed("one trace", get)
    finally:
        await traces.close()
        await store.close()


async def _accounts(dsn: str) -> list[str]:
    store = await open_storage(dsn)
    try:
        found = {a.name: a.id for a in await store.list_accounts()}
    finally:
        await store.close()
    return [found[f"acct-{i}"] for i in range(ACCOUNTS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--measure-only", action="store_true",
                        help="the database is already filled (by an earlier run)")
    args = parser.parse_args()
    dsn = args.dsn or f"sqlite:///{tempfile.mkdtemp()}/dashboard-bench.db"
    print(f"{dsn}: {args.rows:,} traces and ledger debits over {DAYS} days")  # noqa: T201
    if args.measure_only:
        accounts = asyncio.run(_accounts(dsn))
    else:
        accounts = asyncio.run(fill(dsn, args.rows))
    asyncio.run(measure(dsn, accounts))


if __name__ == "__main__":
    main()
