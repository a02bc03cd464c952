"""Prometheus metrics in a dedicated registry; ``observe(ctx)`` at settlement.

``observe_many(snapshots)`` counts a batch of finished requests. ``Observability``
calls it from its drain, so metrics lag a finished request by at most its
``drain_interval`` (20 ms); ``render()`` first counts what this process has queued,
so a scrape of this process does not lag at all.

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

import logging
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from tollway.context import RequestContext
from tollway.tracing.config import MetricsConfig
from tollway.tracing.record import (
    S_ACCOUNT,
    S_ATTEMPTS,
    S_DEPLOYMENT,
    S_DISCONNECTED,
    S_FINISHED,
    S_LIMIT_HIT,
    S_MARKS,
    S_MODEL,
    S_STATUS,
    S_TOOLS,
    S_USAGE,
    S_VERDICTS,
    Snapshot,
    snapshot,
)
from tollway.tracing.writer import WriterStats

__all__ = ["Metrics", "mark_process_dead"]

log = logging.getLogger("tollway.tracing")

_OTHER = "other"
_NONE = "none"


def mark_process_dead(pid: int) -> None:
    """Multi-process mode: drop a dead worker's live gauges (call from the parent)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each value, moving each bucket and the sum once.

    Uses the histogram child's value cells when they are there (prometheus_client
    keeps a non-cumulative count per bucket, the first bound >= the value);
    otherwise falls back to one ``observe`` per value.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if len(values) == 1 or bounds is None or buckets is None or total is None \
            or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    per_bucket: dict[int, int] = {}
    last = len(bounds)
    for value in values:
        if value == value:  # NaN lands in no bucket, as with observe()
            i = bisect_left(bounds, value)
            if i < last:
                per_bucket[i] = per_bucket.get(i, 0) + 1
    total.inc(sum(values))
    for i, count in per_bucket.items():
        buckets[i].inc(count)


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
        self.rate_limited = Counter(
            "tollway_rate_limited", "Requests refused by a tenant control, by scope and limit",
            ("scope", "limit"), registry=r,
        )
        self.inflight = Gauge(
            "tollway_inflight_streams", "Responses being sent right now",
            registry=r, multiprocess_mode="livesum",
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        # Called first by render(): the owner counts requests it has queued (see
        # Observability), so that a scrape never misses a request that has finished.
        self.before_render: Callable[[], Any] | None = None

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
        self.observe_many((snapshot(ctx, total_seconds),))

    def observe_many(self, snapshots: Iterable[Snapshot]) -> int:
        """Count finished requests from their ``record.snapshot``s; return how many.

        Counts are summed per label set first and each series is then moved once
        (histograms: one add per bucket), so a batch costs a few dictionary updates
        per request. A snapshot that cannot be read is logged and skipped.
        """
        counts: dict[tuple[Any, ...], float] = {}
        observed: dict[tuple[Any, ...], list[float]] = {}
        model_of = self._model
        requests, latency, ttft, tokens, cost = (
            self.requests, self.latency, self.ttft, self.tokens, self.cost
        )
        account_labels = self.config.account_labels
        n = 0
        for snap in snapshots:
            try:
                model = model_of(snap[S_MODEL])
                dep = snap[S_DEPLOYMENT]
                if dep is None:
                    dep = _NONE
                acct: tuple[str, ...] = (snap[S_ACCOUNT] or _NONE,) if account_labels else ()
                key: tuple[Any, ...] = (requests, model, dep, str(snap[S_STATUS]), *acct)
                counts[key] = counts.get(key, 0) + 1
                key = (latency, model, dep)
                values = observed.get(key)
                if values is None:
                    observed[key] = [snap[S_FINISHED]]
                else:
                    values.append(snap[S_FINISHED])
                first = snap[S_MARKS][2]
                if first is not None:
                    key = (ttft, model, dep)
                    values = observed.get(key)
                    if values is None:
                        observed[key] = [first]
                    else:
                        values.append(first)
                usage = snap[S_USAGE]
                if usage is not None:
                    for kind, amount in (
                        ("input", usage[0]),
                        ("output", usage[1]),
                        ("cached", usage[3]),
                        ("reasoning", usage[4]),
                    ):
                        if amount:
                            key = (tokens, model, dep, kind, *acct)
                            counts[key] = counts.get(key, 0) + amount
                    if usage[6]:
                        total = dict(usage[6]).get("total_cost_usd")
                        if total is not None:
                            key = (cost, model, dep, *acct)
                            counts[key] = counts.get(key, 0) + float(total)
                attempts = snap[S_ATTEMPTS]
                if attempts:
                    for attempt in attempts:
                        if attempt[1] == "error":
                            status = str(attempt[2]) if attempt[2] else _NONE
                            key = (self.upstream_errors, attempt[0], status)
                            counts[key] = counts.get(key, 0) + 1
                    if len(attempts) > 1:
                        key = (self.fallbacks, model)
                        counts[key] = counts.get(key, 0) + len(attempts) - 1
                for verdict in snap[S_VERDICTS] or ():
                    rule = str(verdict.get("detector") or verdict.get("rule") or "unknown")
                    action = str(verdict.get("action") or verdict.get("verdict") or "unknown")
                    key = (self.firewall, rule, action)
                    counts[key] = counts.get(key, 0) + 1
                for call in snap[S_TOOLS] or ():
                    outcome = "error" if call.get("error") else "ok"
                    key = (self.tools, str(call.get("name") or "unknown"), outcome)
                    counts[key] = counts.get(key, 0) + 1
                hit = snap[S_LIMIT_HIT]
                if hit is not None:
                    key = (self.rate_limited, str(hit.get("scope")), str(hit.get("limit")))
                    counts[key] = counts.get(key, 0) + 1
                if snap[S_DISCONNECTED]:
                    key = (self.disconnects, model)
                    counts[key] = counts.get(key, 0) + 1
            except Exception:
                log.exception("metrics for %s failed", snap[0] if snap else None)
                continue
            n += 1
        child = self._child
        for (metric, *labels), amount in counts.items():
            child(metric, *labels).inc(amount)
        for (metric, *labels), values in observed.items():
            _observe_all(child(metric, *labels), values)
        return n

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``GET /metrics`` and its content type."""
        if self.before_render is not None:
            self.before_render()
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if self._writer_collector is not None:
                registry.register(self._writer_collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
