"""The single entry point: traces, metrics, logs and spans for finished requests.

``Observability(config, database=…)`` is built once; ``start()``/``stop()`` run
with the app's lifespan; ``request_finished(ctx)`` runs at settlement and never
raises; ``metrics_endpoint`` is the raw ASGI handler for ``GET /metrics``;
``api.routes()`` are the trace endpoints.

What runs per request, on the event loop (settlement, after the response): the
in-flight gauge goes down for a stream, and ``request_finished`` copies what the
trace needs into a flat tuple (``record.snapshot``, ~2 µs, which the garbage
collector soon stops tracking) and appends it to a deque. A timer, armed by the
first request of a batch, runs the batch at most ``drain_interval`` (20 ms)
later: for each snapshot it builds the record, hands it to the writer (which
serializes it into its row at once; rows are inserted every
``flush_interval_ms``), adds its log line, exports its span; then it writes the
batch's log lines with one ``write`` and counts the batch in the metrics (one
update per series). So log lines and metrics lag a finished request by at most
``drain_interval`` (``GET /metrics`` drains first: a scrape of this process never
lags; other workers' numbers may lag by that much), and a trace is queryable
within ``drain_interval + flush_interval_ms`` plus the insert. ``stop()`` drains
before the writer's last flush. The in-flight gauge goes up when a stream's
pipeline is built (``count_stream``, a stage factory that adds no stage), so
there is no per-chunk work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from tollway.chunks import Event
from tollway.context import RequestContext
from tollway.tracing.bodies import TraceBodies
from tollway.tracing.config import TracingConfig
from tollway.tracing.logs import RequestLines, setup_logging, teardown_logging
from tollway.tracing.record import S_ENDED_AT, S_ID, Snapshot, record_of, snapshot
from tollway.tracing.store import TraceStore, open_trace_store
from tollway.tracing.writer import TraceWriter, WriterStats

if TYPE_CHECKING:
    from tollway.tracing.metrics import Metrics

__all__ = ["Observability"]

log = logging.getLogger("tollway.tracing")


_Finished = tuple[Snapshot, "RequestContext | None"]  # the context only for OTel


class Observability:
    """Owns the trace store and writer, the metrics, the request log and OTel."""

    drain_interval = 0.02  # seconds a finished request may wait for its batch
    drain_max = 256  # requests per drain step (a bigger backlog continues at once)

    def __init__(
        self,
        config: TracingConfig | None = None,
        *,
        database: str = "sqlite:///tollway.db",
        known_models: Iterable[str] | None = None,
        store: TraceStore | None = None,
        span_processor: Any = None,
        configure_logging: bool = True,
    ) -> None:
        from tollway.tracing.api import TraceAPI

        self.config = config or TracingConfig()
        self.database = self.config.database or database
        self.store: TraceStore | None = store
        self.writer: TraceWriter | None = None
        self.metrics: Metrics | _NoMetrics = _NoMetrics()
        if self.config.metrics.enabled:  # prometheus_client only then: 1.35 MiB of modules
            from tollway.tracing.metrics import Metrics

            self.metrics = Metrics(
                self.config.metrics, known_models=known_models, writer_stats=self._writer_stats
            )
        self.api = TraceAPI(store)
        self.otel: Any = None
        self._span_processor = span_processor
        self._configure_logging = configure_logging
        self._owns_store = store is None
        self._log_handler: logging.Handler | None = None
        self._pending: deque[_Finished] = deque()
        self._drain_timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._streams: set[int] = set()  # id() of contexts counted in the in-flight gauge
        self.metrics.before_render = self.drain

    # -- lifespan -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store (migrating it), start the writer and the span exporter."""
        if self._configure_logging and self.config.logs.enabled:
            self._log_handler = setup_logging(self.config.logs.level)
        if self.config.enabled:
            if self.store is None:
                self.store = await open_trace_store(self.database)
            self.api.store = self.store
            c = self.config
            self.writer = TraceWriter(
                self.store,
                flush_interval=c.flush_interval_ms / 1000.0,
                batch_size=c.batch_size,
                max_queue=c.max_queue,
                retention_days=c.retention_days,
                prune_interval=c.prune_interval_s,
            )
            await self.writer.start()
        if self.config.otel.endpoint or self._span_processor is not None:
            try:
                from tollway.tracing.otel import OtelExporter
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise RuntimeError(
                    "tracing.otel.endpoint is set but OpenTelemetry is not installed: "
                    "pip install 'tollway[otel]'"
                ) from exc
            self.otel = OtelExporter(self.config.otel, span_processor=self._span_processor)

    async def stop(self) -> None:
        """Write the queued traces, close the store, flush spans."""
        self.drain()
        if self.writer is not None:
            await self.writer.stop()
        if self.store is not None and self._owns_store:
            await self.store.close()
            self.store = self.api.store = None
        if self.otel is not None:
            await asyncio.to_thread(self.otel.shutdown)
            self.otel = None
        if self._log_handler is not None:
            teardown_logging(self._log_handler)
            self._log_handler = None

    # -- per request ------------------------------------------------------------------
    def wants_bodies(self, account_id: str | None, account_name: str | None = None) -> bool:
        """Whether to pass (redacted) bodies for this account: skip the work if not."""
        return self.config.enabled and self.config.stores_bodies_for(account_id, account_name)

    def request_finished(self, ctx: RequestContext, bodies: dict[str, Any] | None = None) -> None:
        """Trace, count, log and span one finished request (batched); never raises.

        Only the end time is read now; the rest happens in ``drain()`` (see the
        module docstring), on this event loop, within ``drain_interval``.
        """
        streams = self._streams
        if streams and id(ctx) in streams:
            streams.discard(id(ctx))
            self.metrics.inflight_finished()
        try:
            finished = ctx.timings.get("finished")
            if finished is None:
                finished = time.perf_counter() - ctx.received_perf
            keep = bodies if bodies is not None and self.wants_bodies(
                ctx.account_id, getattr(ctx.account, "account_name", None)) else None
            snap = snapshot(ctx, finished, keep, time.time())
        except Exception:  # a broken context must not break settlement
            log.exception("trace record for %s failed", getattr(ctx, "request_id", None))
            return
        pending = self._pending
        pending.append((snap, ctx if self.otel is not None else None))
        if self._drain_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a script, a test): at once
                self.drain()
                return
            if self.drain_interval > 0:
                self._drain_timer = loop.call_later(self.drain_interval, self._drain_step)
            else:
                self._drain_timer = loop.call_soon(self._drain_step)
        elif len(pending) >= 4 * self.drain_max:  # a burst: do not let the batch grow
            self.drain()

    def drain(self) -> None:
        """Trace, count, log and span every request queued by ``request_finished``."""
        timer, self._drain_timer = self._drain_timer, None
        if timer is not None:
            timer.cancel()
        while self._pending:
            self._process(self._take(len(self._pending)))

    def _drain_step(self) -> None:
        """The timer: one batch of at most ``drain_max``; the rest right after."""
        self._drain_timer = None
        pending = self._pending
        if pending:
            self._process(self._take(min(len(pending), self.drain_max)))
        if pending and self._drain_timer is None:
            self._drain_timer = asyncio.get_running_loop().call_soon(self._drain_step)

    def _take(self, n: int) -> list[_Finished]:
        pending = self._pending
        if n >= len(pending):
            batch = list(pending)
            pending.clear()
            return batch
        popleft = pending.popleft
        return [popleft() for _ in range(n)]

    def _process(self, batch: list[_Finished]) -> None:
        """Trace, count, log and span a batch of finished requests.

        Each record is serialized, logged and exported as soon as it is built and
        then dropped, so that records never pile up for the garbage collector;
        metrics are counted for the whole batch at the end.
        """
        writer = self.writer
        submit = writer.submit if writer is not None else None
        config = self.config
        lines = RequestLines(self._log_handler) if config.logs.enabled else None
        otel = self.otel
        for snap, ctx in batch:
            try:
                record = record_of(snap)
            except Exception:  # a broken context must not break the others
                log.exception("trace record for %s failed", snap[S_ID])
                continue
            if submit is not None:
                submit(record)
            if lines is not None:
                try:
                    lines.add(record, snap[S_ENDED_AT])
                except Exception:
                    log.exception("request log for %s failed", snap[S_ID])
            if otel is not None and ctx is not None:
                try:
                    otel.export(ctx, record)
                except Exception:
                    log.exception("span for %s failed", snap[S_ID])
        if lines is not None:
            try:
                lines.write()
            except Exception:
                log.exception("request log for %d requests failed", len(batch))
        if config.metrics.enabled:
            try:
                self.metrics.observe_many([snap for snap, _ctx in batch])
            except Exception:
                log.exception("metrics for %d requests failed", len(batch))

    async def settle(self, ctx: RequestContext) -> None:
        """A ``Gateway.settlers`` entry (install it last, after billing)."""
        bodies = ctx.trace_bodies
        self.request_finished(ctx, bodies.as_json() if isinstance(bodies, TraceBodies) else None)

    def count_stream(self, ctx: RequestContext) -> None:
        """A ``Gateway.stage_factories`` entry that adds no stage: it counts a stream.

        Stage factories run when the pipeline is built, after admission; the
        stream leaves the in-flight gauge at its settlement (``request_finished``).
        No per-chunk work, unlike ``inflight_stage``.
        """
        request = ctx.request
        if request is not None and request.stream:
            self._streams.add(id(ctx))
            self.metrics.inflight_started()

    def inflight_started(self) -> None:
        """A response started streaming."""
        self.metrics.inflight_started()

    def inflight_finished(self) -> None:
        """A response stopped streaming."""
        self.metrics.inflight_finished()

    def inflight_stage(self, ctx: RequestContext) -> Any:
        """A stage that keeps the in-flight gauge (one extra hop per event).

        the tracing plugin uses the cheaper ``count_stream`` instead.
        """
        if ctx.request is None or not ctx.request.stream:
            return None

        async def stage(events: AsyncIterator[Event], ctx: RequestContext) -> AsyncIterator[Event]:
            self.metrics.inflight_started()
            try:
                async for event in events:
                    yield event
            finally:
                self.metrics.inflight_finished()

        return stage

    # -- /metrics -----------------------------------------------------------------------
    async def metrics_endpoint(self, scope: Any, receive: Any, send: Any) -> None:
        """Raw ASGI handler for ``GET /metrics`` (Prometheus text format)."""
        body, content_type = self.metrics.render()
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type.encode()),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})

    def _writer_stats(self) -> tuple[WriterStats, int]:
        if self.writer is None:
            return WriterStats(), 0
        return self.writer.stats, self.writer.queued


class _NoMetrics:
    """The metrics when they are off (``tracing.metrics.enabled: false``): nothing is
    counted and ``GET /metrics`` is not routed, so prometheus_client is never imported."""

    before_render: Callable[[], Any] | None = None

    def inflight_started(self) -> None:
        """Nothing to count."""

    def inflight_finished(self) -> None:
        """Nothing to count."""

    def observe_many(self, snapshots: Iterable[Snapshot]) -> int:
        """Nothing to count."""
        return 0

    def render(self) -> tuple[bytes, str]:
        """No series."""
        return b"", "text/plain; version=0.0.4; charset=utf-8"
