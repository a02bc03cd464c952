"""Prometheus metrics in a dedicated registry; ``observe(ctx)`` at settlement.

Labels are bounded: model (a configured alias, else ``other``), deployment (from
config), HTTP status, firewall rule/action, tool name; an ``account`` label only
when ``metrics.account_labels`` is on. Never request ids or keys.

Multi-process (``server.workers > 1``): set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory *before* tollway starts (prometheus_client reads it at import).
``render()`` then aggregates every worker's files; the in-flight gauge is summed
over live workers, and the trace-writer counters come from the answering worker
only. Call ``mark_process_dead(pid)`` when a worker exits. Without the variable,
each worker serves its own numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from tollway.context import RequestContext
from tollway.tracing.config import MetricsConfig
from tollway.tracing.writer import WriterStats

__all__ = ["Metrics", "mark_process_dead"]

_OTHER = "other"
_NONE = "none"


def mark_process_dead(pid: int) -> None:
    """Multi-process mode: drop a dead worker's live gauges (call from the parent)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _WriterCollector(Collector):
    """Trace-writer counters read at scrape time (this process only)."""

    def __init__(self, stats: Callable[[], tuple[WriterStats, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        stats, queued = self._stats()
        for name, value, doc in (
            ("tollway_traces_written", stats.written, "Traces written to the store"),
            ("tollway_traces_dropped", stats.dropped, "Traces dropped: queue full or shutdown"),
            ("tollway_traces_rejected", stats.rejected, "Traces the database refused"),
            ("tollway_trace_flush_failures", stats.failed_flushes, "Failed trace batch writes"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("tollway_trace_queue", "Traces waiting to be written", value=queued)


class Metrics:
    """Every tollway metric, with label children cached for a cheap ``observe``."""

    def __init__(
        self,
        config: MetricsConfig | None = None,
        *,
        known_models: Iterable[str] | None = None,
        writer_stats: Callable[[], tuple[WriterStats, int]] | None = None,
    ) -> None:
        self.config = config or MetricsConfig()
        self.known_models = frozenset(known_models) if known_models is not None else None
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        self._writer_collector = _WriterCollector(writer_stats) if writer_stats else None
        if self._writer_collector is not None and not self.multiprocess:
            self.registry.register(self._writer_collector)
        r = self.registry
        acct = ("account",) if self.config.account_labels else ()
        md = ("model", "deployment")
        self.requests = Counter(
            "tollway_requests", "Chat requests by model, deployment and HTTP status",
            (*md, "status", *acct), registry=r,
        )
        self.latency = Histogram(
            "tollway_request_duration_seconds", "Receipt to last byte, in seconds",
            md, buckets=self.config.latency_buckets, registry=r,
        )
        self.ttft = Histogram(
            "tollway_time_to_first_token_seconds", "Receipt to first token, in seconds",
            md, buckets=self.config.ttft_buckets, registry=r,
        )
        self.tokens = Counter(
            "tollway_tokens", "Tokens by direction (input, output, cached, reasoning)",
            (*md, "type", *acct), registry=r,
        )
        self.cost = Counter(
            "tollway_cost_usd", "Total cost charged, in USD", (*md, *acct), registry=r
        )
        self.upstream_errors = Counter(
            "tollway_upstream_errors", "Failed upstream attempts by deployment and status",
            ("deployment", "status"), registry=r,
        )
        self.fallbacks = Counter(
            "tollway_fallbacks", "Moves to the next deployment (after an error or a skip)",
            ("model",), registry=r,
        )
        self.firewall = Counter(
            "tollway_firewall_actions", "Firewall verdicts by rule and action",
            ("rule", "action"), registry=r,
        )
        self.tools = Counter(
            "tollway_platform_tool_calls", "Platform tool calls by tool and outcome",
            ("tool", "outcome"), registry=r,
        )
        self.disconnects = Counter(
            "tollway_client_disconnects", "Requests whose client went away", ("model",), registry=r
        )
        self.inflight = Gauge(
            "tollway_inflight_streams", "Responses being sent right now",
            registry=r, multiprocess_mode="livesum",
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _model(self, model: str | None) -> str:
        if not model:
            return _NONE
        if self.known_models is not None and model not in self.known_models:
            return _OTHER
        return model

    def inflight_started(self) -> None:
        """A response began streaming."""
        self.inflight.inc()

    def inflight_finished(self) -> None:
        """A response finished streaming (whatever the outcome)."""
        self.inflight.dec()

    def observe(self, ctx: RequestContext, total_seconds: float) -> None:
        """Count one finished request."""
        child = self._child
        model = self._model(ctx.requested_model)
        dep = ctx.deployment.id if ctx.deployment is not None else _NONE
        acct: tuple[str, ...] = (ctx.account_id or _NONE,) if self.config.account_labels else ()
        child(self.requests, model, dep, str(ctx.status), *acct).inc()
        child(self.latency, model, dep).observe(total_seconds)
        first = ctx.timings.get("first_token")
        if first is not None:
            child(self.ttft, model, dep).observe(first)
        usage = ctx.usage
        if usage is not None:
            for kind, n in (
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
                ("cached", usage.cached_tokens),
                ("reasoning", usage.reasoning_tokens),
            ):
                if n:
                    child(self.tokens, model, dep, kind, *acct).inc(n)
            total = usage.cost.get("total_cost_usd") if usage.cost else None
            if total is not None:
                child(self.cost, model, dep, *acct).inc(float(total))
        attempts = ctx.attempts
        if attempts:
            for attempt in attempts:
                if attempt.outcome == "error":
                    status = str(attempt.status) if attempt.status else _NONE
                    child(self.upstream_errors, attempt.deployment, status).inc()
            if len(attempts) > 1:
                child(self.fallbacks, model).inc(len(attempts) - 1)
        for verdict in ctx.firewall_verdicts:
            rule = str(verdict.get("detector") or verdict.get("rule") or "unknown")
            action = str(verdict.get("action") or verdict.get("verdict") or "unknown")
            child(self.firewall, rule, action).inc()
        for call in ctx.tool_calls:
            outcome = "error" if call.get("error") else "ok"
            child(self.tools, str(call.get("name") or "unknown"), outcome).inc()
        if ctx.client_disconnected:
            child(self.disconnects, model).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``GET /metrics`` and its content type."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if self._writer_collector is not None:
                registry.register(self._writer_collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
