"""One OpenTelemetry span per request, GenAI semantic conventions."""

from __future__ import annotations

import pytest

from tests.tracing.conftest import make_ctx
from tollway.tracing.config import OtelConfig
from tollway.tracing.record import build_record

pytest.importorskip("opentelemetry.sdk", reason="the 'otel' extra is not installed")

from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from tollway.tracing.otel import OtelExporter  # noqa: E402


def test_span_follows_genai_conventions() -> None:
    memory = InMemorySpanExporter()
    otel = OtelExporter(OtelConfig(), span_processor=SimpleSpanProcessor(memory))
    ctx = make_ctx("req_span", fallback=True)
    otel.export(ctx, build_record(ctx))
    otel.export(ctx503 := make_ctx("req_bad", status=503), build_record(ctx503))
    otel.shutdown()
    ok, bad = memory.get_finished_spans()
    assert ok.name == "chat gpt-test" and ok.kind is SpanKind.SERVER
    a = ok.attributes
    assert a is not None
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-test"
    assert a["gen_ai.response.model"] == "sim-a-2024"
    assert a["gen_ai.usage.input_tokens"] == 7 and a["gen_ai.usage.output_tokens"] == 11
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 50
    assert a["tollway.request_id"] == "req_span" and a["http.response.status_code"] == 200
    assert ok.end_time - ok.start_time == 610_000_000
    assert [e.attributes["deployment"] for e in ok.events] == ["sim-b", "sim-a"]
    assert ok.status.status_code is StatusCode.UNSET
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes["error.type"] == "upstream_unavailable"
    assert ok.resource.attributes["service.name"] == "tollway"
