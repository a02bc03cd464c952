"""The per-request JSON log line."""

from __future__ import annotations

import io
import logging

import orjson

from tests.tracing.conftest import make_ctx
from tollway.tracing.logs import log_request, setup_logging
from tollway.tracing.record import build_record


def test_request_line_is_json_without_secrets() -> None:
    stream = io.StringIO()
    handler = setup_logging("info", stream)
    try:
        ctx = make_ctx("req_log")
        ctx.request.body["api_key"] = "sk-secret-123"  # type: ignore[union-attr]
        ctx.account = {"key": "sk-secret-123"}
        log_request(build_record(ctx, bodies={"request": "hello sk-secret-123"}))
        log_request(build_record(make_ctx("req_fail", status=503)))
    finally:
        logging.getLogger("tollway").removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["event"] == "request" and first["request_id"] == "req_log"
    assert first["level"] == "info" and first["logger"] == "tollway.request"
    assert first["model"] == "gpt-test" and first["status"] == 200
    assert first["ttft_ms"] == 100.0 and first["total_ms"] == 610.0
    assert first["prompt_tokens"] == 7 and first["completion_tokens"] == 11
    assert first["cost_usd"] == "0.00011" and first["key_id"] == "key_abc"
    assert "sk-secret" not in stream.getvalue() and "hello" not in stream.getvalue()
    assert second["level"] == "warning" and second["error_code"] == "upstream_unavailable"


def test_level_threshold() -> None:
    stream = io.StringIO()
    handler = setup_logging("warning", stream)
    try:
        log_request(build_record(make_ctx("req_quiet")))
    finally:
        logging.getLogger("tollway").removeHandler(handler)
    assert stream.getvalue() == ""
