"""Batched trace writes, off the request path, plus the retention prune.

``submit(record)`` serializes the record into its row (``record_to_row``: one
orjson call) and appends that to an in-memory deque; ``submit_row(row)`` appends
a row. Neither waits for the database. Queued rows are tuples of strings and
numbers, which the garbage collector stops tracking, so a full queue costs it
nothing. A background task wakes every ``flush_interval`` (or as soon as
``batch_size`` rows are waiting) and writes them in one transaction. While the
database is down rows stay queued up to ``max_queue``; beyond that new ones are
dropped and counted. ``stop()`` writes what is left. ``submit`` must be called
from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tollway.tracing.store import TraceRow, TraceStore, record_to_row

__all__ = ["TraceWriter", "WriterStats"]

log = logging.getLogger("tollway.tracing")


@dataclass(slots=True)
class WriterStats:
    """Counters the metrics endpoint exposes."""

    written: int = 0
    dropped: int = 0  # queue full (database slow or down)
    rejected: int = 0  # the database refused the row itself
    failed_flushes: int = 0
    pruned: int = 0


class TraceWriter:
    """Queue + background flusher + periodic prune for one ``TraceStore``."""

    def __init__(
        self,
        store: TraceStore,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        max_queue: int = 20_000,
        retention_days: float = 30.0,
        prune_interval: float = 3600.0,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.retention_days = retention_days
        self.prune_interval = prune_interval
        self.stats = WriterStats()
        self._queue: deque[TraceRow] = deque()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._backoff = 0.0

    @property
    def queued(self) -> int:
        """Records waiting to be written."""
        return len(self._queue)

    def submit(self, record: dict[str, Any]) -> bool:
        """Serialize and queue one record (never blocks); False if dropped or rejected."""
        if len(self._queue) >= self.max_queue or self._stopping:
            self.stats.dropped += 1
            return False
        try:
            row = record_to_row(record)
        except Exception as exc:  # noqa: BLE001 - one odd record must not stop the rest
            self.stats.rejected += 1
            log.warning("trace %s not serializable: %s", record.get("id"), exc)
            return False
        return self.submit_row(row)

    def submit_row(self, row: TraceRow) -> bool:
        """Queue one serialized record (O(1), never blocks); False if it was dropped."""
        queue = self._queue
        if len(queue) >= self.max_queue or self._stopping:
            self.stats.dropped += 1
            return False
        queue.append(row)
        if len(queue) >= self.batch_size:
            self._wake.set()
        return True

    async def start(self) -> None:
        """Start the flusher and, when retention is on, the pruner."""
        self._stopping = False
        self._stopped.clear()
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="tollway-trace-flush"))
        if self.retention_days > 0:
            self._tasks.append(asyncio.create_task(self._prune_loop(), name="tollway-trace-prune"))

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, write what is queued (up to ``timeout``), stop the tasks."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        flusher, others = self._tasks[:1], self._tasks[1:]
        for task in others:
            task.cancel()
        if flusher:
            _done, pending = await asyncio.wait(flusher, timeout=timeout)
            for task in pending:
                task.cancel()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._queue:
            log.warning("trace writer: %d traces not written at shutdown", len(self._queue))
            self.stats.dropped += len(self._queue)
            self._queue.clear()

    async def flush(self) -> None:
        """Write everything queued now (stops early if the database fails)."""
        while self._queue:
            if not await self._write_batch():
                return

    async def prune_now(self) -> int:
        """Delete traces older than the retention window; return how many."""
        if self.retention_days <= 0:
            return 0
        before = time.time() - self.retention_days * 86400.0
        count = await self.store.prune(before)
        self.stats.pruned += count
        return count

    async def _flush_loop(self) -> None:
        """Wake on the interval or a full batch; after a failure, back off instead."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                if self._backoff:
                    await asyncio.wait_for(self._stopped.wait(), self._backoff)
                else:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self.flush()
        self._backoff = 0.0
        await self.flush()  # the final flush at shutdown

    async def _prune_loop(self) -> None:
        await asyncio.sleep(min(5.0, self.prune_interval))
        while True:
            try:
                count = await self.prune_now()
                if count:
                    log.info("trace retention: pruned %d traces", count)
            except Exception as exc:  # noqa: BLE001 - keep pruning on the next tick
                log.warning("trace retention: prune failed: %s", exc)
            await asyncio.sleep(self.prune_interval)

    async def _write_batch(self) -> bool:
        """Write up to ``batch_size`` rows; False if the database failed."""
        queue = self._queue
        n = min(self.batch_size, len(queue))
        if n == len(queue):
            rows = list(queue)
            queue.clear()
        else:
            rows = [queue.popleft() for _ in range(n)]
        if not rows:
            return True
        try:
            await self.store.insert_many(rows)
        except asyncio.CancelledError:
            self._requeue(rows)
            raise
        except Exception as exc:  # noqa: BLE001 - the store decides what is transient
            self.stats.failed_flushes += 1
            if self.store.transient(exc):
                self._requeue(rows)
                self._backoff = min(5.0, max(0.2, self._backoff * 2))
                log.warning("trace writer: database unavailable (%s); %d queued", exc, self.queued)
                return False
            await self._write_one_by_one(rows)
            return True
        self.stats.written += len(rows)
        self._backoff = 0.0
        return True

    async def _write_one_by_one(self, rows: list[TraceRow]) -> None:
        """After a non-transient batch failure: keep the good rows, count the bad."""
        for row in rows:
            try:
                await self.store.insert_many([row])
                self.stats.written += 1
            except Exception as exc:  # noqa: BLE001 - a bad row is counted and skipped
                self.stats.rejected += 1
                log.warning("trace %s rejected by the database: %s", row[0], exc)

    def _requeue(self, rows: list[TraceRow]) -> None:
        """Put a failed batch back at the front, within the queue bound."""
        room = self.max_queue - len(self._queue)
        keep = rows[: max(0, room)]
        self.stats.dropped += len(rows) - len(keep)
        self._queue.extendleft(reversed(keep))
