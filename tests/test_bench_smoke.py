"""The benchmark's smoke mode runs end to end and its verification passes (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"a", "b", "c50", "c10", "c_marginal", "m50", "m10", "mt50", "mt10", "m_marginal",
            "d", "e", "p", "f", "workers"}


@pytest.mark.slow
def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert EXPECTED <= set(results["scenarios"])
    assert results["errors"] == 0
    for name in ("a", "b", "c50", "c10", "m50", "m10", "d"):
        for side in ("direct", "tollway"):
            figures = results["scenarios"][name][side]
            assert figures["ok"] > 0 and figures["errors"] == 0
    for name in ("mt50", "mt10"):
        assert results["scenarios"][name]["tollway"]["ok"] > 0
    # the baseline passthrough beside direct and tollway (issue 18)
    for name in ("a", "b", "c50", "c10"):
        figures = results["scenarios"][name]["passthrough"]
        assert figures["ok"] > 0 and figures["errors"] == 0
        assert figures["server_cpu_s"] is not None
    assert "fixed_per_stream_us" in results["scenarios"]["c_marginal"]["passthrough"]
    paced = results["scenarios"]["p"]
    sides = ["passthrough", "tollway"] + (["tollway_all_on"] if "e:p" in {
        row["scenario"] for row in results["table"]} else [])
    for side in sides:
        figures = paced[side]
        assert figures["ok"] > 0 and figures["errors"] == 0
        assert figures["probe_requests"] > 0 and figures["probe_errors"] == 0
        for key in ("cpu_per_chunk_us", "probe_ttft_p50_ms", "probe_ttft_p99_ms",
                    "rss_per_open_stream_kb", "rss_before_mb"):
            assert key in figures
    assert results["table"]
    for row in results["table"]:
        assert {"passthrough", "ratio", "diff"} <= set(row)
    assert any(row["scenario"] == "p" and row["passthrough"] is not None
               for row in results["table"])
