"""Build a trace record (a JSON-ready dict) from a finished ``RequestContext``.

``build_record(ctx)`` is ``record_of(snapshot(ctx, …))``: settlement takes the
cheap ``snapshot`` (a flat tuple) and the record is built later, in a batch.

The record is what ``GET /v1/traces/{id}`` returns. It holds ids (tollway's
request id, the client's ``X-Request-Id`` if it sent one, the key id, never the
key), the route attempts, timings, usage, cost, firewall verdicts, platform tool
calls and the outcome: ``status`` (for a stream that ended with an error event,
that error's status), ``error`` and ``output_delivered`` (``all``, ``partial``:
the stream was cut short, or ``none``: the client received no output). Bodies are
added only when the caller says the account opted in, and they arrive already
redacted by the firewall.

Timings are milliseconds since the request was received; ``ttft_ms`` counts from
receipt, and ``output_tokens_per_second`` is the decode rate after the first
token, ``(completion_tokens - 1) / (last_token - first_token)``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from math import modf
from typing import Any

from tollway.context import RequestContext

__all__ = ["TIMING_MARKS", "Snapshot", "build_record", "finish_reason_of", "iso_time",
           "record_of", "snapshot"]

TIMING_MARKS = ("admitted", "upstream_connected", "first_token", "last_token")

# Keys a platform tool call keeps in the trace; results only with bodies.
_TOOL_KEYS = ("name", "arguments_sha256", "duration_ms", "outcome", "error", "round")


def _iso_time_slow(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


# iso_time's cache: the last whole second seen and its "YYYY-MM-DDTHH:MM:SS" text
# (one tuple, replaced at once, so that threads never see a torn pair).
_iso_second: tuple[float, str] = (-1.0, "")


def iso_time(ts: float) -> str:
    """Unix seconds → ISO 8601 UTC with milliseconds.

    Same text as ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")``
    with ``Z`` for ``+00:00`` (microseconds rounded half-even, then truncated to
    milliseconds), but the date and time of day are formatted once per second.
    """
    if not 0.0 <= ts < 253402300799.0:  # negative, NaN or beyond year 9999: the slow path
        return _iso_time_slow(ts)
    frac, whole = modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1.0
    global _iso_second
    second, text = _iso_second
    if second != whole:
        text = datetime.fromtimestamp(whole, UTC).isoformat()[:-6]
        _iso_second = (whole, text)
    return f"{text}.{us // 1000:03d}Z"


def finish_reason_of(ctx: RequestContext) -> str | None:
    """The finish reason of choice 0 (or of the lowest choice that finished)."""
    if not ctx.finish_reasons:
        return None
    return ctx.finish_reasons.get(0) or ctx.finish_reasons[min(ctx.finish_reasons)]


def _tool_call(call: dict[str, Any], with_result: bool) -> dict[str, Any]:
    kept = {k: call[k] for k in _TOOL_KEYS if k in call}
    if with_result and "result" in call:
        kept["result"] = call["result"]
    return kept


# A snapshot: what a trace record (and the metrics) need from a finished context,
# as one flat tuple. Tuples of strings and numbers are not tracked by the garbage
# collector, so queued snapshots cost it nothing, unlike the context they replace.
(S_ID, S_RECEIVED_AT, S_ACCOUNT, S_KEY, S_MODEL, S_SERVED, S_DEPLOYMENT, S_PROVIDER, S_STREAM,
 S_STATUS, S_ERROR, S_ERROR_CODE, S_REASONS, S_DISCONNECTED, S_PARTIAL, S_ATTEMPTS, S_MARKS,
 S_FINISHED, S_USAGE, S_VERDICTS, S_TOOLS, S_BODIES, S_ENDED_AT, S_CLIENT_ID, S_ERROR_TYPE,
 S_DELIVERED, S_PROVIDER_BLOCKS, S_LIMIT_HIT, S_API) = range(29)
# S_LIMIT_HIT: the tenant control that refused the request (tollway.limits), or None
# S_API: None (chat completions, Messages) or {"endpoint": ..., "mode": ...}
# S_ATTEMPTS: ((deployment, outcome, status, error, latency_ms, misconfigured), ...)
# S_MARKS: (admitted, upstream_connected, first_token, last_token), seconds or None
# S_USAGE: None or (prompt, completion, total, cached, reasoning, estimated, cost pairs or None,
#          cache writes, 1-hour cache writes, output billed, reasoning convention)

Snapshot = tuple[Any, ...]


def snapshot(
    ctx: RequestContext,
    finished: float,
    bodies: dict[str, Any] | None = None,
    ended_at: float = 0.0,
) -> Snapshot:
    """Copy what the trace of ``ctx`` needs (``bodies``: only if the account opted in)."""
    dep = ctx.deployment
    request = ctx.request
    usage = ctx.usage
    get = ctx.timings.get
    reasons = ctx.finish_reasons
    attempts = ctx.attempts
    return (
        ctx.request_id,
        ctx.received_at,
        ctx.account_id,
        ctx.key_id,
        ctx.requested_model,
        ctx.served_model,
        None if dep is None else dep.id,
        None if dep is None else dep.provider,
        None if request is None else request.stream,
        ctx.status,
        ctx.error,
        ctx.error_code,
        tuple(reasons.items()) if reasons else (),
        ctx.client_disconnected,
        ctx.partial,
        tuple([(a.deployment, a.outcome, a.status, a.error, a.latency_ms, a.misconfigured)
               for a in attempts]) if attempts else (),
        (get("admitted"), get("upstream_connected"), get("first_token"), get("last_token")),
        finished,
        None if usage is None else (
            usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
            usage.cached_tokens, usage.reasoning_tokens, usage.estimated,
            _cost_pairs(usage.cost, ctx.provider_overage),
            usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.output_tokens,
            usage.reasoning,
        ),
        ctx.firewall_verdicts or None,  # not copied: nothing changes them after settlement
        ctx.tool_calls or None,
        bodies,
        ended_at,
        ctx.client_request_id,
        ctx.error_type,
        ctx.delivered,
        tuple(ctx.provider_blocks) if ctx.provider_blocks else (),
        ctx.limit_hit,
        ctx.api,
    )


def _cost_pairs(
    cost: dict[str, Any] | None, overage: dict[str, Any] | None
) -> tuple[tuple[str, Any], ...] | None:
    """The cost figures (what was billed) and any provider overage beyond the reservation."""
    if not cost:
        return None
    pairs = tuple(cost.items())
    if overage:
        pairs += (("provider_overage_usd", overage.get("total_cost_usd")),)
    return pairs


def _timings(marks: tuple[Any, ...], finished: float, usage: tuple[Any, ...] | None,
             ) -> dict[str, Any]:
    admitted, connected, first, last = marks
    rate = None
    if first is not None and last is not None and last > first:
        tokens = usage[1] if usage is not None else 0
        if tokens > 1:
            rate = round((tokens - 1) / (last - first), 3)
    first_ms = None if first is None else round(first * 1000.0, 3)
    return {
        "admitted_ms": None if admitted is None else round(admitted * 1000.0, 3),
        "upstream_connected_ms": None if connected is None else round(connected * 1000.0, 3),
        "first_token_ms": first_ms,
        "last_token_ms": None if last is None else round(last * 1000.0, 3),
        "total_ms": None if finished is None else round(finished * 1000.0, 3),
        "ttft_ms": first_ms,
        "output_tokens_per_second": rate,
    }


def record_of(snap: Snapshot) -> dict[str, Any]:
    """The trace record (a JSON-ready dict) of a snapshot."""
    (request_id, received_at, account_id, key_id, model, served_model, deployment, provider,
     stream, status, error, error_code, reasons, disconnected, partial, attempts, marks,
     finished, usage, verdicts, tools, bodies, _ended_at, client_id, error_type, delivered,
     provider_blocks, limit_hit, api) = snap
    if len(reasons) == 1:
        finish_reason = reasons[0][1]
        finish_reasons = {str(reasons[0][0]): finish_reason}
    elif reasons:
        by_choice = dict(reasons)
        finish_reason = by_choice.get(0) or by_choice[min(by_choice)]
        finish_reasons = {str(k): v for k, v in sorted(reasons)}
    else:
        finish_reason, finish_reasons = None, {}
    cost = None
    if usage is not None and usage[6]:
        cost = {k: str(v) for k, v in usage[6] if v is not None}
    return {
        "id": request_id,
        "client_request_id": client_id,
        "object": "trace",
        "received_at": received_at,
        "received": iso_time(received_at),
        "account_id": account_id,
        "key_id": key_id,
        "model": model,
        "served_model": served_model,
        "deployment": deployment,
        "provider": provider,
        "stream": stream,
        "status": status,
        "error": {"message": error, "type": error_type, "code": error_code}
        if error is not None or status >= 400 else None,
        "output_delivered": delivered,
        "limit_hit": limit_hit,
        "finish_reason": finish_reason,
        "finish_reasons": finish_reasons,
        "client_disconnected": disconnected,
        "partial": partial,
        "attempts": [
            {
                "deployment": a[0],
                "outcome": a[1],
                "status": a[2],
                "error": a[3],
                "latency_ms": round(a[4], 3),
                "misconfigured": a[5],
            }
            for a in attempts
        ],
        "timings": _timings(marks, finished, usage),
        "usage": None if usage is None else {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[2],
            "cached_tokens": usage[3],
            "reasoning_tokens": usage[4],
            "estimated": usage[5],
            "cache_write_tokens": usage[7],
            "cache_write_1h_tokens": usage[8],
            "output_tokens": usage[9],
            "reasoning": usage[10],
        },
        "cost": cost,
        "firewall_verdicts": list(verdicts) if verdicts else [],
        "tool_calls": [_tool_call(c, bodies is not None) for c in tools] if tools else [],
        "provider_blocks": list(provider_blocks),
        "api": api,  # None: chat completions; else {"endpoint", "mode"}
        "bodies": bodies,
    }


def build_record(
    ctx: RequestContext,
    *,
    bodies: dict[str, Any] | None = None,
    finished: float | None = None,
) -> dict[str, Any]:
    """The trace of one finished request; ``bodies`` only if the account opted in."""
    if finished is None:
        finished = ctx.timings.get("finished", time.perf_counter() - ctx.received_perf)
    return record_of(snapshot(ctx, finished, bodies))
