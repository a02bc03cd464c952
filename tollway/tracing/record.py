"""Build a trace record (a JSON-ready dict) from a finished ``RequestContext``.

The record is what ``GET /v1/traces/{id}`` returns. It holds ids (the key id,
never the key), the route attempts, timings, usage, cost, firewall verdicts,
platform tool calls and the outcome. Bodies are added only when the caller says
the account opted in, and they arrive already redacted by the firewall.

Timings are milliseconds since the request was received; ``ttft_ms`` counts from
receipt, and ``output_tokens_per_second`` is the decode rate after the first
token, ``(completion_tokens - 1) / (last_token - first_token)``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tollway.chunks import Usage
from tollway.context import RequestContext

__all__ = ["TIMING_MARKS", "build_record", "finish_reason_of", "iso_time"]

TIMING_MARKS = ("admitted", "upstream_connected", "first_token", "last_token")

# Keys a platform tool call keeps in the trace; results only with bodies.
_TOOL_KEYS = ("name", "arguments_sha256", "duration_ms", "outcome", "error", "round")


def iso_time(ts: float) -> str:
    """Unix seconds → ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def finish_reason_of(ctx: RequestContext) -> str | None:
    """The finish reason of choice 0 (or of the lowest choice that finished)."""
    if not ctx.finish_reasons:
        return None
    return ctx.finish_reasons.get(0) or ctx.finish_reasons[min(ctx.finish_reasons)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "estimated": usage.estimated,
    }


def _cost(usage: Usage | None) -> dict[str, str] | None:
    if usage is None or not usage.cost:
        return None
    return {k: str(v) for k, v in usage.cost.items() if v is not None}


def _timings(ctx: RequestContext, finished: float) -> dict[str, Any]:
    marks = ctx.timings
    out: dict[str, Any] = {name + "_ms": _ms(marks.get(name)) for name in TIMING_MARKS}
    out["total_ms"] = _ms(finished)
    first, last = marks.get("first_token"), marks.get("last_token")
    out["ttft_ms"] = _ms(first)
    rate = None
    tokens = ctx.usage.completion_tokens if ctx.usage else 0
    if first is not None and last is not None and last > first and tokens > 1:
        rate = round((tokens - 1) / (last - first), 3)
    out["output_tokens_per_second"] = rate
    return out


def _tool_call(call: dict[str, Any], with_result: bool) -> dict[str, Any]:
    kept = {k: call[k] for k in _TOOL_KEYS if k in call}
    if with_result and "result" in call:
        kept["result"] = call["result"]
    return kept


def build_record(
    ctx: RequestContext,
    *,
    bodies: dict[str, Any] | None = None,
    finished: float | None = None,
) -> dict[str, Any]:
    """The trace of one finished request; ``bodies`` only if the account opted in."""
    if finished is None:
        finished = ctx.timings.get("finished", time.perf_counter() - ctx.received_perf)
    dep = ctx.deployment
    request = ctx.request
    error = None
    if ctx.error is not None or ctx.status >= 400:
        error = {"message": ctx.error, "code": ctx.error_code}
    return {
        "id": ctx.request_id,
        "object": "trace",
        "received_at": ctx.received_at,
        "received": iso_time(ctx.received_at),
        "account_id": ctx.account_id,
        "key_id": ctx.key_id,
        "model": ctx.requested_model,
        "served_model": ctx.served_model,
        "deployment": dep.id if dep is not None else None,
        "provider": dep.provider if dep is not None else None,
        "stream": request.stream if request is not None else None,
        "status": ctx.status,
        "error": error,
        "finish_reason": finish_reason_of(ctx),
        "finish_reasons": {str(k): v for k, v in sorted(ctx.finish_reasons.items())},
        "client_disconnected": ctx.client_disconnected,
        "partial": ctx.partial,
        "attempts": [
            {
                "deployment": a.deployment,
                "outcome": a.outcome,
                "status": a.status,
                "error": a.error,
                "latency_ms": round(a.latency_ms, 3),
                "misconfigured": a.misconfigured,
            }
            for a in ctx.attempts
        ],
        "timings": _timings(ctx, finished),
        "usage": _usage(ctx.usage),
        "cost": _cost(ctx.usage),
        "firewall_verdicts": list(ctx.firewall_verdicts),
        "tool_calls": [_tool_call(c, bodies is not None) for c in ctx.tool_calls],
        "bodies": bodies,
    }
