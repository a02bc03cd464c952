"""The batched paths give the same traces, metrics and log lines as the per-request ones."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.tracing.conftest import make_ctx
from tests.tracing.test_metrics import samples
from tollway.context import Attempt, RequestContext
from tollway.tracing.config import LogsConfig, TracingConfig
from tollway.tracing.logs import RequestLines, log_request, setup_logging, teardown_logging
from tollway.tracing.metrics import Metrics
from tollway.tracing.observability import Observability
from tollway.tracing.record import build_record, iso_time, record_of, snapshot
from tollway.tracing.store import TraceQuery, open_trace_store
from tollway.tracing.writer import TraceWriter

# -- the record: same as the direct build (kept here as the reference) ------------------


def _reference_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def reference_record(ctx: RequestContext, bodies: Any, finished: float) -> dict[str, Any]:
    """build_record as it was before snapshots (one dict straight from the context)."""
    marks = ctx.timings
    timings: dict[str, Any] = {
        n + "_ms": _ms(marks.get(n))
        for n in ("admitted", "upstream_connected", "first_token", "last_token")
    }
    timings["total_ms"] = _ms(finished)
    first, last = marks.get("first_token"), marks.get("last_token")
    timings["ttft_ms"] = _ms(first)
    tokens = ctx.usage.completion_tokens if ctx.usage else 0
    rate = None
    if first is not None and last is not None and last > first and tokens > 1:
        rate = round((tokens - 1) / (last - first), 3)
    timings["output_tokens_per_second"] = rate
    usage = ctx.usage
    reasons = ctx.finish_reasons
    dep = ctx.deployment
    keys = ("name", "arguments_sha256", "duration_ms", "outcome", "error", "round")

    def tool(call: dict[str, Any]) -> dict[str, Any]:
        kept = {k: call[k] for k in keys if k in call}
        if bodies is not None and "result" in call:
            kept["result"] = call["result"]
        return kept

    return {
        "id": ctx.request_id, "client_request_id": ctx.client_request_id,
        "object": "trace", "received_at": ctx.received_at,
        "received": _reference_iso(ctx.received_at), "account_id": ctx.account_id,
        "key_id": ctx.key_id, "model": ctx.requested_model, "served_model": ctx.served_model,
        "deployment": dep.id if dep else None, "provider": dep.provider if dep else None,
        "stream": ctx.request.stream if ctx.request else None, "status": ctx.status,
        "error": {"message": ctx.error, "type": ctx.error_type, "code": ctx.error_code}
        if ctx.error is not None or ctx.status >= 400 else None,
        "output_delivered": ctx.delivered, "limit_hit": ctx.limit_hit,
        "finish_reason": (reasons.get(0) or reasons[min(reasons)]) if reasons else None,
        "finish_reasons": {str(k): v for k, v in sorted(reasons.items())},
        "client_disconnected": ctx.client_disconnected, "partial": ctx.partial,
        "attempts": [{"deployment": a.deployment, "outcome": a.outcome, "status": a.status,
                      "error": a.error, "latency_ms": round(a.latency_ms, 3),
                      "misconfigured": a.misconfigured} for a in ctx.attempts],
        "timings": timings,
        "usage": None if usage is None else {
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "estimated": usage.estimated,
            "cache_write_tokens": usage.cache_write_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
            "output_tokens": usage.output_tokens, "reasoning": usage.reasoning},
        "cost": None if usage is None or not usage.cost
        else {k: str(v) for k, v in usage.cost.items() if v is not None}
        | ({"provider_overage_usd": str(ctx.provider_overage["total_cost_usd"])}
           if ctx.provider_overage else {}),
        "firewall_verdicts": list(ctx.firewall_verdicts),
        "tool_calls": [tool(c) for c in ctx.tool_calls],
        "provider_blocks": list(ctx.provider_blocks),
        "api": ctx.api,
        "bodies": bodies,
    }


def _contexts() -> list[RequestContext]:
    full = make_ctx("req_full", fallback=True)
    full.firewall_verdicts.append({"rule": "pii", "action": "redact"})
    full.tool_calls.append({"name": "calc", "arguments_sha256": "ab", "result": 2,
                            "duration_ms": 3, "outcome": "ok", "round": 1, "extra": "x"})
    full.finish_reasons = {2: "length", 1: "stop"}
    full.usage = replace(full.usage, cost={"total_cost_usd": Decimal("0.5"),  # type: ignore[type-var]
                                           "base_cost_usd": None})
    bare = RequestContext(request_id="req_bare", client_request_id="client-id-1")
    bare.status, bare.error = 401, "invalid key"
    err = make_ctx("req_err", status=503, stream=False)
    err.client_disconnected = err.partial = True
    err.error_type, err.delivered = "upstream_error", "partial"
    err.finish_reasons = {0: ""}
    nousage = make_ctx("req_nousage", completion_tokens=1)
    nousage.usage = None
    odd = make_ctx("req_odd")
    odd.attempts.append(Attempt("sim-c", "skipped", None, None, 0.0004, True))
    odd.finish_reasons = {3: "tool_calls"}
    odd.timings.pop("first_token")
    odd.provider_blocks.append({"type": "server_tool_use", "block": {"name": "web_search"}})
    return [full, bare, err, nousage, odd]


@pytest.mark.parametrize("with_bodies", [False, True])
def test_record_matches_the_reference(with_bodies: bool) -> None:
    for ctx in _contexts():
        bodies = {"request": [{"role": "user", "content": "hi"}]} if with_bodies else None
        got = build_record(ctx, bodies=bodies, finished=0.4321)
        want = reference_record(ctx, bodies, 0.4321)
        assert got == want
        assert orjson.dumps(got) == orjson.dumps(want)  # same keys in the same order
        assert record_of(snapshot(ctx, 0.4321, bodies)) == want


def test_iso_time_matches_datetime() -> None:
    rng = random.Random(7)
    values = [0.0, 0.0005, 0.9995, 0.99999949, 0.9999995, 1.0000005, 1_763_890_000.9999996,
              1_763_890_000.0004999, 1_763_890_000.5, 951_782_400.25, 253_402_300_798.9,
              -1.5, 1e-7]
    values += [rng.uniform(0, 4e9) for _ in range(20_000)]
    values += [math.floor(v) + rng.choice([0.0005, 0.0015, 0.9994999, 0.9995])
               for v in values[:2000]]
    for ts in values:
        assert iso_time(ts) == _reference_iso(ts), ts


# -- metrics: a batch counts what one call per request counts ------------------------------


def test_batch_metrics_equal_per_request_metrics() -> None:
    contexts = _contexts() * 3 + [make_ctx(f"req_{i}", status=200 + i % 3) for i in range(40)]
    for i, ctx in enumerate(contexts):
        ctx.timings["first_token"] = 0.01 * i if i % 5 else None  # type: ignore[assignment]
        if ctx.timings["first_token"] is None:
            del ctx.timings["first_token"]
    one, many = Metrics(known_models={"gpt-test"}), Metrics(known_models={"gpt-test"})
    totals = [0.05 * i for i in range(len(contexts))]
    for ctx, total in zip(contexts, totals, strict=True):
        one.observe(ctx, total)
    assert many.observe_many(
        [snapshot(c, t) for c, t in zip(contexts, totals, strict=True)]) == len(contexts)
    a, b = samples(one), samples(many)
    assert a.keys() == b.keys()
    for key, value in a.items():
        if not key[0].endswith("_created"):  # series creation times differ, of course
            assert b[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


# -- log lines: one write per batch, the same JSON -------------------------------------------


@contextlib.contextmanager
def json_logging(stream: io.StringIO, level: str = "info") -> Iterator[logging.Handler]:
    """``setup_logging`` alone on ``tollway`` (other tests may leave capture handlers)."""
    logger = logging.getLogger("tollway")
    saved = logger.handlers[:]
    logger.handlers.clear()
    handler = setup_logging(level, stream)
    try:
        yield handler
    finally:
        teardown_logging(handler)
        logger.handlers[:] = saved


class CountingStream(io.StringIO):
    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def test_batched_lines_equal_logged_lines() -> None:
    records = [build_record(c, finished=0.5) for c in _contexts()]
    logged, batched = CountingStream(), CountingStream()
    with json_logging(logged):
        for record in records:
            log_request(record)
    with json_logging(batched) as handler:
        lines = RequestLines(handler)
        assert lines.stream is batched  # the direct path
        for record in records:
            lines.add(record, time.time())
        assert batched.writes == 0
        assert lines.write() == len(records)
    assert batched.writes == 1
    want = [orjson.loads(x) for x in logged.getvalue().splitlines()]
    got = [orjson.loads(x) for x in batched.getvalue().splitlines()]
    assert [list(x) for x in got] == [list(x) for x in want]  # same keys, same order
    for g, w in zip(got, want, strict=True):
        assert abs(datetime.fromisoformat(g.pop("ts")).timestamp()
                   - datetime.fromisoformat(w.pop("ts")).timestamp()) < 5
        assert g == w
    assert "hi" not in batched.getvalue()


def test_batched_lines_keep_the_threshold_and_other_handlers() -> None:
    quiet = CountingStream()
    with json_logging(quiet, "warning") as handler:
        lines = RequestLines(handler)
        lines.add(build_record(make_ctx("req_ok")), time.time())
        lines.add(build_record(make_ctx("req_bad", status=502)), time.time())
        assert lines.write() == 1
        assert orjson.loads(quiet.getvalue())["request_id"] == "req_bad"
        extra = logging.StreamHandler(io.StringIO())
        logging.getLogger("tollway.request").addHandler(extra)
        try:  # another handler would see the record: go through logging
            lines = RequestLines(handler)
            assert lines.stream is None
            lines.add(build_record(make_ctx("req_bad2", status=500)), time.time())
            assert extra.stream.getvalue() == "request\n"
            assert "req_bad2" in quiet.getvalue()
        finally:
            logging.getLogger("tollway.request").removeHandler(extra)


# -- Observability: batched, bounded lag, nothing lost at stop ---------------------------------


def test_requests_are_batched_and_drained_within_the_interval(tmp_path: Any) -> None:
    async def main() -> None:
        stream = CountingStream()
        config = TracingConfig(logs=LogsConfig(level="info"))
        obs = Observability(config, database=f"sqlite:///{tmp_path}/t.db",
                            known_models={"gpt-test"}, configure_logging=False)
        with json_logging(stream) as handler:
            obs._log_handler = handler
            await run(obs, stream)
        store = await open_trace_store(f"sqlite:///{tmp_path}/t.db")
        try:
            found = await store.find(TraceQuery(account_id="acct_1", limit=100))
            assert len(found) == 52  # stop() drained and flushed the last one too
        finally:
            await store.close()

    async def run(obs: Observability, stream: CountingStream) -> None:
        await obs.start()
        try:
            for i in range(50):
                obs.request_finished(make_ctx(f"req_{i}"))
            assert len(obs._pending) == 50 and stream.writes == 0  # nothing done yet
            await asyncio.sleep(obs.drain_interval + 0.05)
            assert not obs._pending
            assert stream.writes == 1 and len(stream.getvalue().splitlines()) == 50
            assert obs.writer is not None and obs.writer.queued + obs.writer.stats.written == 50
            obs.request_finished(make_ctx("req_scraped"))
            text = obs.metrics.render()[0].decode()  # a scrape counts what is queued
            assert 'model="gpt-test",status="200"} 51.0' in text
            obs.request_finished(make_ctx("req_last"))
        finally:
            await obs.stop()

    asyncio.run(main())


def test_stream_gauge_moves_at_pipeline_start_and_settlement() -> None:
    async def main() -> None:
        obs = Observability(TracingConfig(enabled=False), configure_logging=False)
        await obs.start()
        streamed, plain = make_ctx("req_s"), make_ctx("req_p", stream=False)
        obs.count_stream(streamed)  # a stage factory that adds no stage
        obs.count_stream(plain)
        assert b"tollway_inflight_streams 1.0" in obs.metrics.render()[0]
        await obs.settle(plain)
        assert b"tollway_inflight_streams 1.0" in obs.metrics.render()[0]
        await obs.settle(streamed)
        assert b"tollway_inflight_streams 0.0" in obs.metrics.render()[0]
        await obs.settle(make_ctx("req_early"))  # refused before its pipeline: never counted
        assert b"tollway_inflight_streams 0.0" in obs.metrics.render()[0]
        await obs.stop()

    asyncio.run(main())


# -- the writer and the store -------------------------------------------------------------------


def test_writer_serializes_at_submit(tmp_path: Any) -> None:
    async def main() -> None:
        store = await open_trace_store(f"sqlite:///{tmp_path}/t.db")
        writer = TraceWriter(store, flush_interval=1.0)
        bad = build_record(make_ctx("req_bad"))
        bad["bodies"] = {"x": {1, 2}}
        bad["status"] = "not a number"
        assert not writer.submit(bad)
        assert writer.stats.rejected == 1 and writer.queued == 0
        assert writer.submit(build_record(make_ctx("req_good")))
        assert isinstance(writer._queue[0], tuple)  # a row, not the record
        await writer.flush()
        assert writer.stats.written == 1
        await store.close()

    asyncio.run(main())


def test_large_batches_keep_their_order(dsn: str) -> None:
    async def main() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store, batch_size=1000)
        try:
            for i in range(250):  # more than one multi-row INSERT on SQLite
                writer.submit(build_record(make_ctx(f"req_{i:03d}", received_at=1_750_000_000)))
            await writer.flush()
            found = await store.find(TraceQuery(account_id="acct_1", limit=100))
            assert [r["id"] for _seq, r in found] == [f"req_{i:03d}" for i in range(249, 149, -1)]
            seqs = [seq for seq, _r in found]
            assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 100
            got = await store.get("req_007", "acct_1")
            assert got == build_record(make_ctx("req_007", received_at=1_750_000_000))
        finally:
            await store.close()
        assert writer.stats.written == 250

    asyncio.run(main())
