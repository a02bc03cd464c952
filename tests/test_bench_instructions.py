"""``python -m bench.instructions``: instructions per request, counted by callgrind."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import _shares, collected, per_request, request_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_the_total_is_callgrinds_last_collected_line() -> None:
    log = (b"==41== Callgrind, a call-graph generating cache profiler\n"
           b"INFO: Uvicorn running\n==41== Events    : Ir\n==41== Collected : 3487223762\n")
    assert collected(log) == 3_487_223_762
    with pytest.raises(RuntimeError, match="no total"):
        collected(b"==41== Callgrind\nKilled\n")


def test_per_request_is_the_difference_of_two_runs() -> None:
    assert per_request((50, 150), (3_487_000_000, 3_570_000_000)) == 830_000
    with pytest.raises(ValueError):
        per_request((150, 50), (1, 2))


def test_requests_are_shared_between_the_connections() -> None:
    assert _shares(10, 3) == [4, 3, 3]
    assert _shares(2, 8) == [1, 1]


def test_the_request_is_the_benchs() -> None:
    raw = request_bytes("tw-key", True, {"firewall": "strict-block"})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Authorization: Bearer tw-key" in head
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(body)  # type: ignore[union-attr]
    sent = json.loads(body)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["firewall"] == "strict-block" and sent["max_tokens"] == 10


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_real_server_is_counted(tmp_path: Path) -> None:
    """Two real servers under callgrind, a few requests each: a plausible count a request
    (a whole request through the bare gateway is about a million instructions)."""
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--features", "off", "--kinds", "whole",
         "--requests", "2", "8", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "instructions per request" in done.stdout
    figure = json.loads(out.read_text())["per_request"]["off"]["whole"]
    assert 200_000 < figure < 5_000_000, figure
