"""Trace records built from finished request contexts."""

from __future__ import annotations

import orjson

from tests.tracing.conftest import make_ctx
from tollway.context import RequestContext
from tollway.tracing.record import build_record


def test_complete_record_from_context() -> None:
    ctx = make_ctx("req_full", fallback=True)
    ctx.firewall_verdicts.append({"rule": "pii", "action": "redact", "side": "request"})
    ctx.tool_calls.append(
        {"name": "web_search", "arguments_sha256": "ab12", "result": "secret page",
         "duration_ms": 3, "outcome": "ok", "round": 1}
    )
    record = build_record(ctx)
    assert record["id"] == "req_full"
    assert record["account_id"] == "acct_1" and record["key_id"] == "key_abc"
    assert record["model"] == "gpt-test" and record["deployment"] == "sim-a"
    assert record["served_model"] == "sim-a-2024" and record["provider"] == "sim"
    assert record["stream"] is True
    assert [a["deployment"] for a in record["attempts"]] == ["sim-b", "sim-a"]
    assert record["attempts"][0]["outcome"] == "error" and record["attempts"][0]["status"] == 503
    t = record["timings"]
    assert t["admitted_ms"] == 2.0 and t["upstream_connected_ms"] == 30.0
    assert t["ttft_ms"] == 100.0 and t["last_token_ms"] == 600.0 and t["total_ms"] == 610.0
    assert t["output_tokens_per_second"] == 20.0  # (11 - 1) tokens / 0.5 s
    assert record["usage"]["prompt_tokens"] == 7 and record["usage"]["total_tokens"] == 18
    assert record["cost"]["total_cost_usd"] == "0.00011"
    assert record["finish_reason"] == "stop" and record["finish_reasons"] == {"0": "stop"}
    assert record["status"] == 200 and record["error"] is None
    assert record["firewall_verdicts"] == [{"rule": "pii", "action": "redact", "side": "request"}]
    assert record["tool_calls"] == [{"name": "web_search", "arguments_sha256": "ab12",
                                     "duration_ms": 3, "outcome": "ok", "round": 1}]
    # the result only with bodies
    assert record["bodies"] is None
    assert record["received"].endswith("Z")
    orjson.dumps(record)  # JSON-ready


def test_bodies_and_tool_results_only_when_given() -> None:
    ctx = make_ctx()
    ctx.tool_calls.append({"name": "calc", "arguments": "1+1", "result": 2})
    record = build_record(ctx, bodies={"request": [{"role": "user", "content": "[REDACTED]"}]})
    assert record["bodies"]["request"][0]["content"] == "[REDACTED]"
    assert record["tool_calls"][0]["result"] == 2


def test_error_and_disconnect_are_flagged() -> None:
    ctx = make_ctx(status=503)
    ctx.client_disconnected = True
    ctx.partial = True
    record = build_record(ctx)
    assert record["status"] == 503
    assert record["error"] == {"message": "upstream failed", "type": None,
                               "code": "upstream_unavailable"}
    assert record["client_disconnected"] is True and record["partial"] is True


def test_bare_context_before_routing() -> None:
    """A request refused early (bad JSON, 401) still gives a valid record."""
    ctx = RequestContext(request_id="req_early")
    ctx.status, ctx.error = 401, "invalid key"
    record = build_record(ctx)
    assert record["deployment"] is None and record["usage"] is None and record["cost"] is None
    assert record["timings"]["ttft_ms"] is None
    assert record["timings"]["output_tokens_per_second"] is None
    assert record["timings"]["total_ms"] >= 0
    assert record["stream"] is None and record["attempts"] == []
