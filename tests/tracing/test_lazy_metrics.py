"""prometheus_client (1.35 MiB of modules at rest) is imported only by a process whose
metrics are on: with ``tracing.metrics.enabled: false`` nothing is counted, ``GET
/metrics`` is not routed, and the library is never loaded."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from openai import OpenAI

from tests.support.servers import run_tollway

_CODE = """
import sys
import orjson
from tollway.assembly import create_app
from tollway.config import parse_settings

app = create_app(parse_settings(orjson.loads(sys.argv[1])))
print("prometheus_client" in sys.modules)
"""


@pytest.mark.parametrize("metrics", [False, True])
def test_prometheus_client_is_imported_only_with_metrics_on(tmp_path: Path, metrics: bool) -> None:
    config = {
        "database": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "billing": {"enabled": False},
        "providers": {"sim": {"type": "simulated"}},
        "models": {"m": {"deployments": [{"provider": "sim", "model": "m"}]}},
        "tracing": {"enabled": True, "metrics": {"enabled": metrics}},
    }
    done = subprocess.run([sys.executable, "-c", _CODE, orjson.dumps(config).decode()],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(metrics)]


def test_a_stream_is_served_and_traced_with_metrics_off(tmp_path: Path) -> None:
    """The stream counters (``count_stream`` and the settlement) run against the null
    metrics: the stream is served, traced, and ``GET /metrics`` is not there."""
    config = {
        "database": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "admin_key": "admin-secret",
        "providers": {"sim": {"type": "simulated"}},
        "models": {"m": {"deployments": [{"provider": "sim", "model": "echo"}]}},
        "tracing": {"enabled": True, "metrics": {"enabled": False}, "flush_interval_ms": 20},
    }
    with run_tollway(config) as url:
        client = OpenAI(base_url=url + "/v1", api_key="any", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", stream=True, messages=[{"role": "user", "content": "hello there"}])
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert "hello there" in text
        headers = {"Authorization": "Bearer admin-secret"}
        for _ in range(100):
            got = httpx.get(f"{url}/admin/traces/{raw.request_id}", headers=headers)
            if got.status_code == 200:
                break
            time.sleep(0.05)
        assert got.status_code == 200 and got.json()["status"] == 200
        assert httpx.get(url + "/metrics").status_code == 404
