"""Optional OpenTelemetry: one span per request, GenAI semantic conventions.

Needs the ``otel`` extra (``opentelemetry-sdk`` and the OTLP/HTTP exporter),
imported only when an endpoint is configured or a span processor is passed in.
The span is written after the fact from the trace record, with the real start
(receipt) and end times: name ``chat {model}``, kind SERVER (tollway serves the
client; the upstream calls are its route attempts, recorded as span events).
"""

from __future__ import annotations

from typing import Any

from tollway.context import RequestContext
from tollway.tracing.config import OtelConfig

__all__ = ["OtelExporter", "span_attributes"]

_REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)


def span_attributes(ctx: RequestContext, record: dict[str, Any]) -> dict[str, Any]:
    """GenAI (and a few tollway.*) attributes for the request's span."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "http.response.status_code": record["status"],
        "tollway.request_id": record["id"],
        "tollway.client_disconnected": bool(record["client_disconnected"]),
    }
    optional = {
        "gen_ai.request.model": record.get("model"),
        "gen_ai.response.model": record.get("served_model"),
        "gen_ai.provider.name": record.get("provider"),
        "tollway.client_request_id": record.get("client_request_id"),
        "tollway.deployment": record.get("deployment"),
        "tollway.account_id": record.get("account_id"),
        "tollway.key_id": record.get("key_id"),
        "tollway.stream": record.get("stream"),
        "tollway.ttft_ms": record["timings"].get("ttft_ms"),
        "tollway.cost_usd": (record.get("cost") or {}).get("total_cost_usd"),
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if record["finish_reasons"]:
        attrs["gen_ai.response.finish_reasons"] = list(record["finish_reasons"].values())
    usage = record.get("usage")
    if usage:
        attrs["gen_ai.usage.input_tokens"] = usage["prompt_tokens"]
        attrs["gen_ai.usage.output_tokens"] = usage["completion_tokens"]
    if ctx.request is not None:
        body = ctx.request.body
        for field, attr in _REQUEST_PARAMS:
            value = body.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attrs[attr] = value
    error = record.get("error")
    if error:
        attrs["error.type"] = str(error.get("code") or record["status"])
    return attrs


class OtelExporter:
    """Turns finished requests into spans on a private ``TracerProvider``."""

    def __init__(self, config: OtelConfig, *, span_processor: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        self._provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name})
        )
        if span_processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers))
            span_processor = BatchSpanProcessor(exporter)
        self._provider.add_span_processor(span_processor)
        self._tracer = self._provider.get_tracer("tollway")
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._kind = SpanKind.SERVER
        self._Status = Status
        self._StatusCode = StatusCode

    def export(self, ctx: RequestContext, record: dict[str, Any]) -> None:
        """Emit the span of one finished request (export is batched in a thread)."""
        start_ns = int(record["received_at"] * 1e9)
        end_ns = start_ns + int((record["timings"]["total_ms"] or 0.0) * 1e6)
        name = f"chat {record['model']}" if record.get("model") else "chat"
        span = self._tracer.start_span(
            name, kind=self._kind, attributes=span_attributes(ctx, record), start_time=start_ns
        )
        at_ms = record["timings"].get("admitted_ms") or 0.0
        for attempt in record["attempts"]:  # stamped at each attempt's (approximate) end
            at_ms += attempt["latency_ms"]
            span.add_event(
                "tollway.route_attempt",
                {k: v for k, v in attempt.items() if v is not None},
                timestamp=start_ns + int(at_ms * 1e6),
            )
        if record["status"] >= 500:  # server spans: 4xx is the client's error, not ours
            message = (record.get("error") or {}).get("message")
            span.set_status(self._Status(self._StatusCode.ERROR, message or None))
        span.end(end_time=end_ns)

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporter."""
        self._provider.shutdown()
