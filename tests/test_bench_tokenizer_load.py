"""``python -m bench.tokenizer_load`` runs and reports the loop's gaps during a load."""

from __future__ import annotations

import subprocess
import sys


def test_it_reports_the_loops_gaps() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.tokenizer_load"], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fields = done.stdout.split()
    figures = dict(zip(fields[0::2], map(float, fields[1::2]), strict=True))
    assert figures["load_wall_ms"] > 0 and figures["longest_gap_ms"] > 0
    assert figures["longest_gap_ms"] <= figures["load_wall_ms"] + 1
