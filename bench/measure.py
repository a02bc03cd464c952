"""CPU and memory of a process tree from /proc, and the figures derived from them.

CPU is utime+stime (+ cutime+cstime, so reaped workers still count) summed over a
root pid and all its descendants; RSS is VmRSS summed over the same tree. Only
deltas of CPU are used, so the constant part of c*time cancels out.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "RssSampler",
    "cpu_seconds",
    "machine_busy_seconds",
    "marginal_chunk_cost",
    "percentile",
    "rss_bytes",
    "tree_pids",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(root: int) -> float:
    """User+system CPU seconds of the tree (own + reaped children)."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # after ')': state=0 ppid=1 … utime=11 stime=12 cutime=13 cstime=14
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine, all cores (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / CLK_TCK


def rss_bytes(root: int) -> int:
    """VmRSS summed over the tree, in bytes."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


@dataclass
class RssSampler:
    """Samples a tree's RSS every ``interval`` seconds in the background."""

    root: int
    interval: float = 0.25
    samples: list[tuple[float, int]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        t0 = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - t0, rss_bytes(self.root)))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.samples.append((self.samples[-1][0] if self.samples else 0.0, rss_bytes(self.root)))

    @property
    def peak(self) -> int:
        return max((s for _, s in self.samples), default=0)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) or None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def probe_timings(db: Path, model: str, since: float) -> dict[str, float | None]:
    """What tollway's own traces say of the probe requests (``model``, received after
    ``since``, a Unix time): admission and first-token percentiles, measured in the server
    from the request's arrival, so neither the load generator's loop nor the connect counts."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT json_extract(data, '$.timings.admitted_ms'),"
            " json_extract(data, '$.timings.first_token_ms')"
            " FROM traces WHERE model = ? AND received_at >= ?", (model, since)
        ).fetchall()
    except sqlite3.Error:  # no traces table: traces were off
        return {}
    finally:
        conn.close()
    admitted = [float(a) for a, _ in rows if a is not None]
    first = [float(f) for _, f in rows if f is not None]
    out: dict[str, float | None] = {"probe_traces": float(len(rows))}
    for name, values in (("admitted", admitted), ("first_token", first)):
        for q in (50, 99):
            out[f"probe_{name}_p{q}_ms"] = percentile(values, q)
    return out


def marginal_chunk_cost(
    per_stream_hi: float, chunks_hi: int, per_stream_lo: float, chunks_lo: int
) -> tuple[float, float]:
    """(marginal CPU per chunk, fixed CPU per stream) from two stream lengths."""
    per_chunk = (per_stream_hi - per_stream_lo) / (chunks_hi - chunks_lo)
    return per_chunk, per_stream_lo - chunks_lo * per_chunk
