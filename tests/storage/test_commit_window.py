"""The group commit's window: a group stays open ``COMMIT_AFTER_ITERATIONS`` event-loop
iterations for other transactions to join, or less once ``COMMIT_WINDOW_S`` has passed.
Idle, an iteration costs microseconds and the iterations decide; under load an iteration
lasts milliseconds (each brings many transactions), and waiting for eight of them kept
new requests' admissions waiting ≈ 150–225 ms (median) under paced streaming load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tollway.storage.sqlite import COMMIT_AFTER_ITERATIONS, COMMIT_WINDOW_S, SqliteDatabase


async def _iterations_until_committed(path: Path, busy_s: float) -> int:
    """Loop iterations a transaction waits for its commit while every iteration also runs
    ``busy_s`` of other work."""
    db = await SqliteDatabase.connect(f"sqlite:///{path}")
    loop = asyncio.get_running_loop()
    ticks = 0
    running = True

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        if busy_s:
            time.sleep(busy_s)  # another task's work in this iteration
        if running:
            loop.call_soon(tick)

    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            await tx.execute("INSERT INTO t VALUES (1)")
        loop.call_soon(tick)
        start = ticks
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
        waited = ticks - start
        running = False
        rows = await db.fetch("SELECT x FROM t ORDER BY x")
        assert [r["x"] for r in rows] == [1, 2]  # committed, not merely answered
        return waited
    finally:
        running = False
        await db.close()


async def test_an_idle_loop_keeps_the_group_open_for_its_iterations(tmp_path: Path) -> None:
    assert await _iterations_until_committed(tmp_path / "w.db", 0.0) >= COMMIT_AFTER_ITERATIONS - 1


async def test_a_busy_loop_commits_once_the_window_has_passed(tmp_path: Path) -> None:
    busy = 0.005  # per iteration: longer than the window
    assert COMMIT_WINDOW_S < busy
    assert await _iterations_until_committed(tmp_path / "w.db", busy) <= 3
