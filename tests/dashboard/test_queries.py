"""The dashboard's report queries on SQLite and PostgreSQL: exact sums, scoping, buckets."""

from __future__ import annotations

import asyncio
import random
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tracing.conftest import make_ctx
from tollway.dashboard.data import overview, percentile
from tollway.dashboard.rollup import Rollups
from tollway.storage import open_storage
from tollway.storage.base import NewEntry
from tollway.tracing.record import build_record
from tollway.tracing.reports import trace_buckets, ttft_samples
from tollway.tracing.store import open_trace_store, record_to_row

HOUR = 3600
T0 = 1_800_000_000 - 1_800_000_000 % 86400  # a midnight, UTC


async def _seed(dsn: str) -> tuple[Any, Any, dict[str, str]]:
    store = await open_storage(dsn)
    traces = await open_trace_store(dsn, migrate=False)
    a = await store.create_account("alpha")
    b = await store.create_account("beta")
    await store.append(NewEntry(a.id, "credit", 10_000_000))
    await store.append(NewEntry(b.id, "credit", 10_000_000))
    return store, traces, {"a": a.id, "b": b.id}


async def _debit(store: Any, account: str, micros: int, model: str, at: float) -> None:
    """A debit written at time ``at`` (the ledger is append-only: the clock is set)."""
    with mock.patch("tollway.storage.sql_money.time.time", return_value=at):
        await store.append(NewEntry(account, "debit", -micros, request_id=f"r{at}",
                                    model=model, total_cost_micros=micros))


def test_spend_buckets_are_exact_and_scoped(dsn: str) -> None:
    async def go() -> None:
        store, traces, ids = await _seed(dsn)
        try:
            await _debit(store, ids["a"], 1, "m1", T0 + 10)
            await _debit(store, ids["a"], 999_999, "m1", T0 + 20)
            await _debit(store, ids["a"], 7, "m2", T0 + HOUR + 5)
            await _debit(store, ids["b"], 123_456, "m1", T0 + 30)
            await _debit(store, ids["b"], 5, "m1", T0 - 1)  # before the range
            rows = await store.spend_buckets(T0, T0 + 2 * HOUR, HOUR)
            got = {(r["bucket"], r["model"], r["account_id"]): r["spend_micros"] for r in rows}
            assert got == {(T0, "m1", ids["a"]): 1_000_000, (T0 + HOUR, "m2", ids["a"]): 7,
                           (T0, "m1", ids["b"]): 123_456}
            only_a = await store.spend_buckets(T0, T0 + 2 * HOUR, HOUR, ids["a"])
            assert {r["account_id"] for r in only_a} == {ids["a"]}
            days = await store.spend_buckets(T0 - 86400, T0 + 86400, 86400, ids["b"])
            assert {(r["bucket"], r["spend_micros"]) for r in days} == {
                (T0 - 86400, 5), (T0, 123_456)}
            # the ledger filter: kind, time and id paging, one account only
            debits = await store.ledger_filtered(ids["a"], kinds=("debit",))
            assert [e.entry.amount_micros for e in debits] == [-7, -999_999, -1]
            page = await store.ledger_filtered(ids["a"], kinds=("debit",), before=debits[0].id,
                                               limit=1)
            assert [e.entry.amount_micros for e in page] == [-999_999]
            timed = await store.ledger_filtered(ids["a"], since=T0 + 15, until=T0 + HOUR)
            assert [e.entry.amount_micros for e in timed] == [-999_999]
            assert all(e.entry.account_id == ids["b"]
                       for e in await store.ledger_filtered(ids["b"]))
        finally:
            await traces.close()
            await store.close()

    asyncio.run(go())


def test_trace_buckets_count_requests_errors_and_fallbacks(dsn: str) -> None:
    async def go() -> None:
        store, traces, ids = await _seed(dsn)
        try:
            contexts = [
                make_ctx("q1", account_id=ids["a"], received_at=T0 + 1),
                make_ctx("q2", account_id=ids["a"], received_at=T0 + 2, status=502),
                make_ctx("q3", account_id=ids["a"], received_at=T0 + HOUR + 3, fallback=True),
                make_ctx("q4", account_id=ids["b"], received_at=T0 + 4, model="other"),
            ]
            await traces.insert_many([record_to_row(build_record(c)) for c in contexts])
            rows = await trace_buckets(traces, T0, T0 + 2 * HOUR, HOUR)
            by = {(r["bucket"], r["model"], r["account_id"]): r for r in rows}
            first = by[(T0, "gpt-test", ids["a"])]
            assert (first["requests"], first["errors"], first["fallbacks"]) == (2, 1, 0)
            assert first["output_tokens"] == 22
            later = by[(T0 + HOUR, "gpt-test", ids["a"])]
            assert (later["requests"], later["fallbacks"]) == (1, 1)
            assert later["rate_n"] == 1 and later["rate_sum"] > 0
            only_b = await trace_buckets(traces, T0, T0 + 2 * HOUR, HOUR, ids["b"])
            assert [(r["model"], r["requests"]) for r in only_b] == [("other", 1)]
            assert await ttft_samples(traces, T0, T0 + 2 * HOUR, ids["b"]) == [100.0]
            assert len(await ttft_samples(traces, T0, T0 + 2 * HOUR)) == 4

            await _debit(store, ids["a"], 250, "gpt-test", T0 + 5)
            await _debit(store, ids["b"], 1_000_001, "other", T0 + 6)
            names = {ids["a"]: "alpha", ids["b"]: "beta"}
            view = await overview(store, traces, account_id=ids["a"], range_name="24h",
                                  bucket_name="hour", group="model", names=names,
                                  now=T0 + 2 * HOUR)
            assert view["total_spend_usd"] == "0.000250"  # beta's spend is not in alpha's view
            assert view["total_requests"] == 3 and view["error_rate"] == "33.3 %"
            assert view["top_accounts"] == [] and set(view["spend"]) == {"gpt-test"}
            admin = await overview(store, traces, account_id=None, range_name="24h",
                                   bucket_name=None, group="account", names=names,
                                   now=T0 + 2 * HOUR)
            assert admin["total_spend_usd"] == "1.000251"
            assert [a["name"] for a in admin["top_accounts"]] == ["beta", "alpha"]
            assert set(admin["spend"]) == {"alpha", "beta"} and len(admin["x"]) == 25
        finally:
            await traces.close()
            await store.close()

    asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200),
       st.floats(0, 100))
def test_percentile_is_a_sample_with_the_right_rank(values: list[float], p: float) -> None:
    got = percentile(values, p)
    assert got in values
    below = sum(v < got for v in values)  # type: ignore[operator]
    at_or_below = sum(v <= got for v in values)  # type: ignore[operator]
    assert below < max(1, p / 100 * len(values)) + 1e-9 <= at_or_below + 1e-9 or p == 0


def test_rollups_plus_the_tail_equal_a_full_scan_at_every_step(dsn: str) -> None:
    """Rows added between refreshes, before and after: the overview never changes by
    reading rollups instead of every row (money to the micro-dollar)."""

    async def go() -> None:
        store, traces, ids = await _seed(dsn)
        rollups = Rollups(store.db, batch=2)  # several transactions per refresh
        rng = random.Random(3)
        names = {ids["a"]: "alpha", ids["b"]: "beta"}
        try:
            for step in range(6):
                for i in range(rng.randint(0, 6)):
                    at = T0 + rng.uniform(0, 3 * 86400)
                    who = rng.choice(["a", "b"])
                    ctx = make_ctx(f"s{step}-{i}", account_id=ids[who], received_at=at,
                                   status=rng.choice([200, 200, 502]),
                                   fallback=rng.random() < 0.3, model=rng.choice(["m1", "m2"]))
                    await traces.insert_many([record_to_row(build_record(ctx))])
                    await _debit(store, ids[who], rng.randint(1, 2_000_000), "m1", at)
                for range_name, bucket, account, group in (
                        ("7d", "hour", None, "model"), ("7d", "day", None, "account"),
                        ("7d", "day", ids["a"], "model"), ("24h", "hour", ids["b"], "model")):
                    args = dict(account_id=account, range_name=range_name, bucket_name=bucket,
                                group=group, names=names, now=T0 + 3 * 86400 + 10)
                    full = await overview(store, traces, **args)  # type: ignore[arg-type]
                    rolled = await overview(store, traces, rollups=rollups,
                                            **args)  # type: ignore[arg-type]
                    assert rolled == full, (step, range_name, bucket)
                await rollups.refresh()
            marks = await rollups.watermarks()
            assert marks["traces"] > 0 and marks["ledger"] > 0  # the rollups were used
        finally:
            await traces.close()
            await store.close()

    asyncio.run(go())


def test_rollups_of_traces_kept_in_their_own_database(tmp_path: Any) -> None:
    """``tracing.database`` names a second SQLite file: the traces' rollups are kept beside
    them and the ledger's beside it; the overview read through both equals a full scan,
    and each refresher folds only its own table."""

    async def go() -> None:
        main = f"sqlite:///{tmp_path / 'main.db'}"
        elsewhere = f"sqlite:///{tmp_path / 'traces.db'}"
        store = await open_storage(main)
        traces = await open_trace_store(elsewhere)
        trace_db = (await open_storage(elsewhere, migrate=False)).db
        a = await store.create_account("alpha")
        await store.append(NewEntry(a.id, "credit", 10_000_000))
        spend = Rollups(store.db, batch=2, sources=("ledger",))
        traced = Rollups(trace_db, batch=2, sources=("traces",))
        rng = random.Random(5)
        try:
            for step in range(4):
                for i in range(rng.randint(1, 5)):
                    at = T0 + rng.uniform(0, 2 * 86400)
                    ctx = make_ctx(f"o{step}-{i}", account_id=a.id, received_at=at,
                                   status=rng.choice([200, 502]), model=rng.choice(["m1", "m2"]))
                    await traces.insert_many([record_to_row(build_record(ctx))])
                    await _debit(store, a.id, rng.randint(1, 2_000_000), "m1", at)
                for group in ("model", "account"):
                    args = dict(account_id=None, range_name="7d", bucket_name="hour",
                                group=group, names={a.id: "alpha"}, now=T0 + 3 * 86400)
                    full = await overview(store, traces, **args)  # type: ignore[arg-type]
                    rolled = await overview(store, traces, rollups=spend, trace_rollups=traced,
                                            **args)  # type: ignore[arg-type]
                    assert rolled == full, (step, group)
                await spend.refresh()
                await traced.refresh()
            assert set(await spend.watermarks()) == {"ledger"}
            mark = (await traced.watermarks())["traces"]
            assert mark > 0
            args = dict(account_id=None, range_name="7d", bucket_name="hour", group="model",
                        names={a.id: "alpha"}, now=T0 + 3 * 86400)
            before = await overview(store, traces, **args)  # type: ignore[arg-type]
            await trace_db.execute("DELETE FROM traces WHERE seq <= ?", mark)
            rolled = await overview(store, traces, rollups=spend, trace_rollups=traced,
                                    **args)  # type: ignore[arg-type]
            # what was folded is read from the traces' rollups (TTFT percentiles are read
            # from the rows themselves, which are gone)
            diff = {k for k in before if rolled[k] != before[k]}
            assert diff == {"ttft_p50", "ttft_p99"}, {k: (before[k], rolled[k]) for k in diff}
            assert (await spend.watermarks())["ledger"] > 0
            rows = await trace_db.fetch("SELECT COUNT(*) AS n FROM spend_rollup_hour")
            assert rows[0]["n"] == 0  # the ledger is not there to fold
        finally:
            await trace_db.close()
            await traces.close()
            await store.close()

    asyncio.run(go())
