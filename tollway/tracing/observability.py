"""The single entry point: traces, metrics, logs and spans for finished requests.

``Observability(config, database=…)`` is built once; ``start()``/``stop()`` run
with the app's lifespan; ``request_finished(ctx)`` runs at settlement and never
raises; ``metrics_endpoint`` is the raw ASGI handler for ``GET /metrics``;
``api.routes()`` are the trace endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from tollway.chunks import Event
from tollway.context import RequestContext
from tollway.tracing.config import TracingConfig
from tollway.tracing.logs import log_request, setup_logging, teardown_logging
from tollway.tracing.metrics import Metrics
from tollway.tracing.record import build_record
from tollway.tracing.store import TraceStore, open_trace_store
from tollway.tracing.writer import TraceWriter, WriterStats

__all__ = ["Observability"]

log = logging.getLogger("tollway.tracing")


class Observability:
    """Owns the trace store and writer, the metrics, the request log and OTel."""

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
        from tollway.api.traces import TraceAPI

        self.config = config or TracingConfig()
        self.database = self.config.database or database
        self.store: TraceStore | None = store
        self.writer: TraceWriter | None = None
        self.metrics = Metrics(
            self.config.metrics, known_models=known_models, writer_stats=self._writer_stats
        )
        self.api = TraceAPI(store)
        self.otel: Any = None
        self._span_processor = span_processor
        self._configure_logging = configure_logging
        self._owns_store = store is None
        self._log_handler: logging.Handler | None = None

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
    def wants_bodies(self, account_id: str | None) -> bool:
        """Whether to pass (redacted) bodies for this account: skip the work if not."""
        return self.config.enabled and self.config.stores_bodies_for(account_id)

    def request_finished(self, ctx: RequestContext, bodies: dict[str, Any] | None = None) -> None:
        """Trace, count, log and span one finished request; never raises."""
        try:
            finished = ctx.timings.get("finished")
            if finished is None:
                finished = time.perf_counter() - ctx.received_perf
            keep = bodies if bodies is not None and self.wants_bodies(ctx.account_id) else None
            record = build_record(ctx, bodies=keep, finished=finished)
        except Exception:  # a broken context must not break settlement
            log.exception("trace record for %s failed", ctx.request_id)
            return
        if self.writer is not None:
            self.writer.submit(record)
        if self.config.metrics.enabled:
            try:
                self.metrics.observe(ctx, finished)
            except Exception:
                log.exception("metrics for %s failed", ctx.request_id)
        if self.config.logs.enabled:
            try:
                log_request(record)
            except Exception:
                log.exception("request log for %s failed", ctx.request_id)
        if self.otel is not None:
            try:
                self.otel.export(ctx, record)
            except Exception:
                log.exception("span for %s failed", ctx.request_id)

    async def settle(self, ctx: RequestContext) -> None:
        """A ``Gateway.settlers`` entry (install it last, after billing)."""
        self.request_finished(ctx, getattr(ctx, "trace_bodies", None))

    def inflight_started(self) -> None:
        """A response started streaming."""
        self.metrics.inflight_started()

    def inflight_finished(self) -> None:
        """A response stopped streaming."""
        self.metrics.inflight_finished()

    def inflight_stage(self, ctx: RequestContext) -> Any:
        """A ``Gateway.stage_factories`` entry that keeps the in-flight gauge."""
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
