"""The benchmark reads where its probe requests waited from tollway's traces."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bench.measure import probe_timings


def test_probe_timings_come_from_the_probes_traces_of_the_run(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE traces (model TEXT, received_at REAL, data TEXT)")
    rows = [("bench-model", 100.0 + i, {"admitted_ms": float(i), "first_token_ms": 10.0 + i})
            for i in range(1, 101)]  # fmt: skip
    rows.append(("bench-model", 50.0, {"admitted_ms": 9999.0, "first_token_ms": 9999.0}))
    rows.append(("bench-model-d20", 150.0, {"admitted_ms": 9999.0, "first_token_ms": None}))
    conn.executemany("INSERT INTO traces VALUES (?, ?, ?)",
                     [(m, t, json.dumps({"timings": d})) for m, t, d in rows])  # fmt: skip
    conn.commit()
    conn.close()
    got = probe_timings(db, "bench-model", since=100.0)
    assert got["probe_traces"] == 100  # neither the warm-up's nor the paced streams'
    assert got["probe_admitted_p50_ms"] == 50.0  # nearest rank, as every bench percentile
    assert got["probe_admitted_p99_ms"] == 100.0
    assert got["probe_first_token_p50_ms"] == 60.0


def test_no_traces_table_means_no_probe_timings(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    sqlite3.connect(db).close()
    assert probe_timings(db, "bench-model", since=0.0) == {}
