"""Aggregates of traces for the dashboard: requests, errors, fallbacks, tokens by time.

Built once per dialect on top of ``TraceStore.report``. Every query is bounded by
a time range, which the ``traces_time`` / ``traces_account_time`` indexes serve.
"""

from __future__ import annotations

from typing import Any

from tollway.tracing.store import TraceStore

__all__ = ["TTFT_SAMPLES", "expressions", "trace_buckets", "ttft_samples"]

TTFT_SAMPLES = 5_000  # percentiles are taken over the newest this many in the range

_SQLITE = {
    "bucket": "CAST(received_at / ? AS INTEGER)",
    "fallback": "json_array_length(data, '$.attempts') > 1",
    "tokens": "json_extract(data, '$.usage.completion_tokens')",
    "rate": "json_extract(data, '$.timings.output_tokens_per_second')",
    "ttft": "json_extract(data, '$.timings.ttft_ms')",
}
_POSTGRES = {
    "bucket": "CAST(FLOOR(received_at / ?) AS BIGINT)",
    "fallback": "jsonb_typeof(data->'attempts') = 'array'"
                " AND jsonb_array_length(data->'attempts') > 1",
    "tokens": "CAST(data->'usage'->>'completion_tokens' AS BIGINT)",
    "rate": "CAST(data->'timings'->>'output_tokens_per_second' AS DOUBLE PRECISION)",
    "ttft": "CAST(data->'timings'->>'ttft_ms' AS DOUBLE PRECISION)",
}


def expressions(dialect: str) -> dict[str, str]:
    """The dialect's SQL for a bucket (one ``?``: its seconds) and the JSON fields read."""
    return _POSTGRES if dialect == "postgres" else _SQLITE


def _sql(store: TraceStore) -> dict[str, str]:
    return expressions(getattr(store, "dialect", "sqlite"))


def _range(since: float, until: float, account_id: str | None) -> tuple[str, list[Any]]:
    where = "received_at >= ? AND received_at < ?"
    args: list[Any] = [since, until]
    if account_id is not None:
        where = "account_id = ? AND " + where
        args.insert(0, account_id)
    return where, args


async def trace_buckets(
    store: TraceStore, since: float, until: float, bucket_seconds: int,
    account_id: str | None = None, after_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Per bucket, model (requested), deployment (served) and account: requests,
    errors (status ≥ 400), fallbacks (more than one route attempt), output tokens
    and output tokens/s (``rate_sum`` over ``rate_n`` requests); ``after_seq``: only
    traces with a larger ``seq`` (those not rolled up yet)."""
    q = _sql(store)
    if after_seq is None:
        where, args = _range(since, until, account_id)
    else:  # the tail: read by seq only (a short range of the primary key), then by time;
        # the seq is written out (an int) so that the planner sees how short the range is
        # (and by account afterwards: an account's index would lead the planner astray)
        where, args = f"seq > {int(after_seq)}", []
    sql = (
        f"SELECT {q['bucket']} AS b, model, deployment, account_id, COUNT(*),"
        " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN {q['fallback']} THEN 1 ELSE 0 END),"
        f" SUM({q['tokens']}), SUM({q['rate']}), COUNT({q['rate']})"
        f" FROM traces WHERE {where} GROUP BY b, model, deployment, account_id ORDER BY b"
    )
    rows = await store.report(sql, [float(bucket_seconds), *args])
    first = int(since // bucket_seconds) * bucket_seconds
    return [
        {"bucket": int(r[0]) * bucket_seconds, "model": r[1], "deployment": r[2],
         "account_id": r[3], "requests": int(r[4]), "errors": int(r[5] or 0),
         "fallbacks": int(r[6] or 0), "output_tokens": int(r[7] or 0),
         "rate_sum": float(r[8] or 0.0), "rate_n": int(r[9] or 0)}
        for r in rows if first <= int(r[0]) * bucket_seconds < until
        and (account_id is None or r[3] == account_id)
    ]  # fmt: skip


async def ttft_samples(
    store: TraceStore, since: float, until: float, account_id: str | None = None
) -> list[float]:
    """Time-to-first-token (ms) of the newest ``TTFT_SAMPLES`` requests in the range."""
    q = _sql(store)
    where, args = _range(since, until, account_id)
    sql = (
        f"SELECT {q['ttft']} AS t FROM traces WHERE {where} AND {q['ttft']} IS NOT NULL"
        f" ORDER BY received_at DESC LIMIT {TTFT_SAMPLES}"
    )
    return [float(r[0]) for r in await store.report(sql, args)]
