"""Prometheus metrics: the text parses, counters move, labels stay bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families

from tests.tracing.conftest import make_ctx
from tollway.tracing.config import MetricsConfig
from tollway.tracing.metrics import Metrics
from tollway.tracing.writer import WriterStats


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move() -> None:
    m = Metrics(known_models={"gpt-test"}, writer_stats=lambda: (WriterStats(written=4), 2))
    ctx = make_ctx(fallback=True)
    ctx.firewall_verdicts.append({"rule": "pii", "action": "redact"})
    ctx.tool_calls.append({"name": "web_search", "error": None})
    ctx.tool_calls.append({"name": "web_search", "error": "timeout"})
    md = {"model": "gpt-test", "deployment": "sim-a"}
    assert value(m, "tollway_requests_total", status="200", **md) == 0
    m.observe(ctx, 0.61)
    m.observe(make_ctx(status=502), 1.2)
    assert value(m, "tollway_requests_total", status="200", **md) == 1
    assert value(m, "tollway_requests_total", status="502", **md) == 1
    assert value(m, "tollway_tokens_total", type="input", **md) == 14
    assert value(m, "tollway_tokens_total", type="output", **md) == 22
    assert abs(value(m, "tollway_cost_usd_total", **md) - 0.00022) < 1e-12
    assert value(m, "tollway_time_to_first_token_seconds_count", **md) == 2
    assert value(m, "tollway_time_to_first_token_seconds_bucket", le="0.1", **md) == 2
    assert value(m, "tollway_request_duration_seconds_bucket", le="1.0", **md) == 1
    assert value(m, "tollway_upstream_errors_total", deployment="sim-b", status="503") == 1
    assert value(m, "tollway_fallbacks_total", model="gpt-test") == 1
    assert value(m, "tollway_firewall_actions_total", rule="pii", action="redact") == 1
    assert value(m, "tollway_platform_tool_calls_total", tool="web_search", outcome="ok") == 1
    assert value(m, "tollway_platform_tool_calls_total", tool="web_search", outcome="error") == 1
    assert value(m, "tollway_traces_written_total") == 4
    assert value(m, "tollway_trace_queue") == 2
    m.inflight_started()
    m.inflight_started()
    m.inflight_finished()
    assert value(m, "tollway_inflight_streams") == 1


def test_labels_are_bounded() -> None:
    m = Metrics(known_models={"gpt-test"})
    ctx = make_ctx("req_unique_123", model="random-model-name-from-client")
    ctx.client_disconnected = True
    m.observe(ctx, 0.5)
    text = m.render()[0].decode()
    assert "req_unique_123" not in text and "random-model-name" not in text
    assert "acct_1" not in text and "key_abc" not in text
    assert value(m, "tollway_client_disconnects_total", model="other") == 1


def test_account_labels_opt_in() -> None:
    m = Metrics(MetricsConfig(account_labels=True))
    m.observe(make_ctx(), 0.5)
    assert value(m, "tollway_requests_total", model="gpt-test", deployment="sim-a",
                 status="200", account="acct_1") == 1


def test_multiprocess_dir(tmp_path: object) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, two processes' counts add up in render()."""
    code = textwrap.dedent("""
        import sys
        from tests.tracing.conftest import make_ctx
        from tollway.tracing.metrics import Metrics
        m = Metrics()
        m.observe(make_ctx(), 0.5)
        if sys.argv[1] == "render":
            sys.stdout.write(m.render()[0].decode())
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    subprocess.run([sys.executable, "-c", code, "count"], env=env, cwd=cwd, check=True)
    out = subprocess.run([sys.executable, "-c", code, "render"], env=env, cwd=cwd, check=True,
                         capture_output=True, text=True).stdout
    found = {
        (s.name, s.labels.get("status")): s.value
        for f in text_string_to_metric_families(out) for s in f.samples
    }
    assert found[("tollway_requests_total", "200")] == 2
