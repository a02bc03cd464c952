"""What the pages show, read through the storage layer and scoped to who is asking.

Every method takes ``account_id``: None only for the admin; for an account it is
the session's account and the query is restricted to it in SQL, whatever the
page's parameters say.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from tollway.billing.pricing import usd_str
from tollway.dashboard.rollup import HOUR, TOTAL, Rollups
from tollway.storage.base import Account
from tollway.storage.sql import SqlStorage
from tollway.tracing.reports import trace_buckets, ttft_samples
from tollway.tracing.store import TraceStore

__all__ = ["RANGES", "Overview", "overview", "percentile"]

# range name → (seconds, default bucket)
RANGES: dict[str, tuple[int, str]] = {
    "1h": (3600, "hour"), "24h": (86400, "hour"), "7d": (7 * 86400, "hour"),
    "30d": (30 * 86400, "day"), "90d": (90 * 86400, "day"),
}  # fmt: skip
BUCKETS = {"hour": 3600, "day": 86400}
MAX_POINTS = 24 * 31


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0–100) of ``values``, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _rate(part: int, whole: int) -> str:
    return "–" if whole == 0 else f"{100 * part / whole:.1f} %"


Overview = dict[str, Any]


async def overview(
    store: SqlStorage, traces: TraceStore | None, *, account_id: str | None, range_name: str,
    bucket_name: str | None, group: str, names: dict[str, str], now: float | None = None,
    alias_of: dict[str, str] | None = None, rollups: Rollups | None = None,
    trace_rollups: Rollups | None = None,
) -> Overview:
    """Spend and requests over time plus the headline figures, for one account or all.

    Traces name the model a client asked for; ledger debits the deployment that
    served it. ``alias_of`` (deployment id → model, for deployments of one model
    only) puts a debit under that model; others are shown under their deployment.
    With ``rollups``, hours come from the rollup tables plus the rows not rolled up yet;
    ``trace_rollups`` are the traces' when they are kept in a database of their own.
    """
    alias_of = alias_of or {}
    seconds, default_bucket = RANGES.get(range_name, RANGES["24h"])
    bucket_name = bucket_name if bucket_name in BUCKETS else default_bucket
    step = BUCKETS[bucket_name]
    if seconds // step > MAX_POINTS:
        bucket_name, step = "day", BUCKETS["day"]
    until = now if now is not None else time.time()
    first = int((until - seconds) // step) * step  # the range is whole buckets
    xs = list(range(first, int(until // step) * step + 1, step))
    series_dims = ("account_id",) if group == "account" else ("model", "deployment")
    other_dims = ("model", "deployment") if group == "account" else ("account_id",)
    if rollups is None:
        spend_series = await store.spend_buckets(first, until, step, account_id)
        trace_series = [] if traces is None else await trace_buckets(
            traces, first, until, step, account_id)
        spend_other, trace_other = spend_series, trace_series
    else:
        trace_rollups = trace_rollups or rollups
        marks = await rollups.watermarks()
        trace_marks = marks if trace_rollups is rollups else await trace_rollups.watermarks()
        spend_tail = await store.spend_buckets(first, until, HOUR, account_id,
                                               after_id=marks.get("ledger", 0))
        trace_tail = [] if traces is None else await trace_buckets(
            traces, first, until, HOUR, account_id, after_seq=trace_marks.get("traces", 0))
        for row in (*spend_tail, *trace_tail):
            row["bucket"] = row["bucket"] // step * step
        spend_series = [*await rollups.rows("spend", first, until, account_id, step,
                                            series_dims), *spend_tail]
        spend_other = [*await rollups.rows("spend", first, until, account_id, TOTAL,
                                           other_dims), *spend_tail]
        trace_series = [] if traces is None else [*await trace_rollups.rows(
            "trace", first, until, account_id, step, series_dims), *trace_tail]
        trace_other = trace_series if group == "model" or traces is None else [
            *await trace_rollups.rows("trace", first, until, account_id, TOTAL, other_dims),
            *trace_tail]
    ttfts = [] if traces is None else await ttft_samples(traces, first, until, account_id)

    def model(row: dict[str, Any], debit: bool) -> str:
        if debit:
            dep = row.get("deployment") or ""
            return alias_of.get(dep) or dep or row.get("model") or "(none)"
        return row.get("model") or "(none)"

    def key(row: dict[str, Any], debit: bool) -> str:
        if group == "account":
            return names.get(row.get("account_id") or "", row.get("account_id") or "(none)")
        return model(row, debit)

    index = {x: i for i, x in enumerate(xs)}
    spend: dict[str, list[int]] = defaultdict(lambda: [0] * len(xs))
    requests: dict[str, list[int]] = defaultdict(lambda: [0] * len(xs))
    total_micros = 0
    for row in spend_series:
        if row["bucket"] in index:
            spend[key(row, True)][index[row["bucket"]]] += row["spend_micros"]
        total_micros += row["spend_micros"]
    n = errors = fallbacks = tokens = rate_n = 0
    rate_sum = 0.0
    for row in trace_series:
        if row["bucket"] in index:
            requests[key(row, False)][index[row["bucket"]]] += row["requests"]
        n += row["requests"]
        errors += row["errors"]
        fallbacks += row["fallbacks"]
        tokens += row["output_tokens"]
        rate_sum += float(row["rate_sum"])
        rate_n += int(row["rate_n"])
    by_model: dict[str, int] = defaultdict(int)
    req_model: dict[str, int] = defaultdict(int)
    by_account: dict[str, int] = defaultdict(int)
    for row in spend_series if group == "model" else spend_other:
        by_model[model(row, True)] += row["spend_micros"]
    for row in trace_series if group == "model" else trace_other:
        req_model[model(row, False)] += row["requests"]
    for row in spend_series if group == "account" else spend_other:
        by_account[row.get("account_id") or ""] += row["spend_micros"]
    p50, p99 = percentile(ttfts, 50), percentile(ttfts, 99)
    return {
        "range": range_name if range_name in RANGES else "24h",
        "bucket": bucket_name,
        "group": group,
        "x": xs,
        "spend": {k: v for k, v in sorted(spend.items())},
        "requests": {k: v for k, v in sorted(requests.items())},
        "total_spend_usd": usd_str(total_micros),
        "total_requests": n,
        "error_rate": _rate(errors, n),
        "fallback_rate": _rate(fallbacks, n),
        "ttft_p50": "–" if p50 is None else f"{p50:.0f} ms",
        "ttft_p99": "–" if p99 is None else f"{p99:.0f} ms",
        "tokens_per_second": "–" if rate_n == 0 else f"{rate_sum / rate_n:.1f}",
        "output_tokens": tokens,
        "top_models": [
            {"name": m, "spend_usd": usd_str(by_model.get(m, 0)), "requests": req_model.get(m, 0)}
            for m in sorted(set(by_model) | set(req_model),
                            key=lambda m: (-by_model.get(m, 0), -req_model.get(m, 0), m))[:10]
        ],
        "top_accounts": [
            {"id": a, "name": names.get(a, a), "spend_usd": usd_str(s)}
            for a, s in sorted(by_account.items(), key=lambda kv: -kv[1])[:10]
        ] if account_id is None else [],
        "empty": n == 0 and total_micros == 0 and not spend_series,
    }  # fmt: skip


def account_view(account: Account) -> dict[str, Any]:
    """An account's money as text, exact to the micro-dollar."""
    return {
        "id": account.id, "name": account.name, "disabled": account.disabled,
        "balance_usd": usd_str(account.balance_micros),
        "reserved_usd": usd_str(account.reserved_micros),
        "available_usd": usd_str(account.available_micros),
        "created_at": account.created_at,
    }  # fmt: skip
