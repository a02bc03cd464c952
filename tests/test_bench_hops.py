"""``python -m bench.hops``: how often a request's task waits, counted in a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fewest_suspensions(features: str) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "bench.hops", "--features", features, "--requests", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"suspensions per request median ([0-9.]+), min ([0-9]+)", done.stdout)
    assert found, done.stdout[-2000:]
    assert "the median request's waits (µs, loop iterations)" in done.stdout
    # the fewest: on a loaded machine some requests wait once more (seen at a median of 2
    # and 4 on a machine 3x slower than usual, with and without this stop's changes)
    return float(found.group(2))


@pytest.mark.parametrize(("features", "waits"), [("", 1.0), ("billing", 3.0)])
def test_billing_adds_the_reservations_and_the_settlements_waits(
    features: str, waits: float
) -> None:
    """Without features a request waits once (the upstream); billing adds the reservation's
    commit before it and the settlement's after the response."""
    assert _fewest_suspensions(features) == waits
