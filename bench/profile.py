"""py-spy sampling of tollway during a scenario, summarised to tollway's own frames.

``py-spy record --format raw --function --nonblocking -s`` writes folded stacks
("f1 (file:line);f2 (…) COUNT"). For each tollway frame we report the share of
samples whose stack contains it (inclusive) and the share where it is the deepest
tollway frame (self: its own code plus the library code it calls directly), and
the top (deepest tollway frame → frame it calls) pairs. Entry frames (server.py,
cli.py) do not count: time under them only is uvicorn/uvloop/aiohttp's own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["Profiler", "summarise"]


_ENTRY = ("tollway/server.py", "tollway/cli.py", "tollway/__main__.py")


def _is_tollway(frame: str) -> bool:
    """A frame of tollway's request-handling code (not its entry points).

    py-spy prints paths relative to sys.path entries: ``name (tollway/api/sse.py:12)``.
    """
    return (("(tollway/" in frame or "/tollway/" in frame) and "site-packages" not in frame
            and not any(e in frame for e in _ENTRY))


def _short(frame: str) -> str:
    """``name (/abs/…/tollway/api/sse.py:12)`` → ``name (tollway/api/sse.py:12)``."""
    head, sep, rest = frame.partition(" (")
    for marker in ("/tollway/", "/site-packages/", "/lib/python"):
        i = rest.find(marker)
        if i >= 0:
            rest = rest[i + 1:]
            break
    return head + sep + rest


def summarise(folded: str, top: int = 25) -> dict[str, Any]:
    """Top tollway frames (inclusive and self %) and top leaf frames overall."""
    total = 0
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    callee: Counter[tuple[str, str]] = Counter()
    in_tollway = 0
    for line in folded.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        leaf[_short(frames[-1])] += count
        ours = [i for i, f in enumerate(frames) if _is_tollway(f)]
        if ours:
            in_tollway += count
            for f in {_short(frames[i]) for i in ours}:
                incl[f] += count
            deepest = ours[-1]
            self_[_short(frames[deepest])] += count
            below = frames[deepest + 1] if deepest + 1 < len(frames) else "(own code)"
            callee[(_short(frames[deepest]), _short(below))] += count
        else:
            callee[("(outside tollway code)", _short(frames[-1]))] += count
    if not total:
        return {"samples": 0, "frames": [], "leaves": []}
    top_frames = [{"frame": f, "self_pct": round(self_[f] * 100 / total, 1),
               "total_pct": round(incl[f] * 100 / total, 1)}
              for f, _ in self_.most_common(top)]
    leaves = [{"frame": f, "pct": round(c * 100 / total, 1)} for f, c in leaf.most_common(15)]
    return {"samples": total, "in_tollway_pct": round(in_tollway * 100 / total, 1),
            "frames": top_frames, "leaves": leaves,
            "callees": [{"frame": a, "calls": b, "pct": round(c * 100 / total, 1)}
                        for (a, b), c in callee.most_common(top)],
            "inclusive": [{"frame": f, "pct": round(c * 100 / total, 1)}
                          for f, c in incl.most_common(top)]}


class Profiler:
    """Starts and stops ``py-spy record`` on a pid (and its worker children)."""

    def __init__(self, outdir: Path, rate: int = 250) -> None:
        self.outdir = outdir
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.current = ""
        self.results: dict[str, dict[str, Any]] = {}
        exe = Path(sys.executable).with_name("py-spy")
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")

    def start(self, name: str, pid: int) -> None:
        if not self.exe:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.current = name
        self.proc = subprocess.Popen(
            [self.exe, "record", "--pid", str(pid), "--format", "raw", "--function",
             "--nonblocking", "--subprocesses", "--rate", str(self.rate),
             "--output", str(self.outdir / f"{name}.folded")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        path = self.outdir / f"{self.current}.folded"
        if path.exists():
            self.results[self.current] = summarise(path.read_text())

    def summaries(self) -> dict[str, list[dict[str, Any]]]:
        return {name: s["frames"] for name, s in self.results.items()}

    def details(self) -> dict[str, dict[str, Any]]:
        return self.results
