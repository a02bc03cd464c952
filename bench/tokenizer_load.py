"""``python -m bench.tokenizer_load``: how long the event loop stalls while the tokenizer loads.

Billing loads the offline tokenizer (``tollway.tokens``) in a worker thread the first
time a request needs an exact count, while the loop keeps serving. This runs a loop
kept busy by a few allocating tasks (as a server's is), starts that load, and prints
the gaps between the loop's iterations until it is done: how often and how long the
load's holds of the GIL keep the loop from running. In-process; about 2 s.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from typing import Any

from tollway import tokens

__all__ = ["measure"]


async def _busy(stop: asyncio.Event) -> None:
    keep: list[Any] = []
    while not stop.is_set():
        keep.append([{"n": i} for i in range(50)])  # short-lived containers, like requests
        if len(keep) > 2000:
            del keep[:1000]
        await asyncio.sleep(0)


async def measure() -> dict[str, float]:
    """Load the tokenizer (unloaded first) beside a busy loop; the loop's gaps meanwhile."""
    tokens._encoding = None  # noqa: SLF001 - measure a fresh load
    stop = asyncio.Event()
    busy = [asyncio.ensure_future(_busy(stop)) for _ in range(4)]
    gaps: list[float] = []
    started = last = time.perf_counter()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    loader = asyncio.ensure_future(tokens.load())
    while not loader.done():
        await asyncio.sleep(0)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    wall = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    await asyncio.gather(*busy)
    gaps.sort(reverse=True)
    return {
        "load_wall_ms": wall * 1000,
        "process_cpu_ms": (used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime) * 1000,
        "longest_gap_ms": gaps[0] * 1000,
        "second_gap_ms": gaps[1] * 1000 if len(gaps) > 1 else 0.0,
        "gaps_over_10ms": float(sum(g > 0.010 for g in gaps)),
        "stalled_ms": sum(g for g in gaps if g > 0.005) * 1000,  # in gaps over 5 ms
    }


def main() -> None:
    gc.freeze()
    gc.set_threshold(7000, 20, 20)  # as the server runs
    result = asyncio.run(measure())
    print("  ".join(f"{k} {v:.0f}" for k, v in result.items()))  # noqa: T201


if __name__ == "__main__":
    main()
