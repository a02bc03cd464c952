"""Writes of one key gathered while one of them is written: a group commit by hand.

On PostgreSQL every request of an account writes that account's row, and the row stays
locked until the commit's WAL flush, so one account's writes commit one after another.
``GroupWriter`` writes a write that finds nothing of its key being written at once, in
its caller's task; the writes of that key that come while it runs wait, and then go
together as one batch, written by one statement in a task of its own (and the writes
that come while that runs, as the next batch). A batch that cannot be written whole
changes nothing and its writes are written one by one, so each meets its own outcome (a
refusal, an error) as it would alone. Waiting callers wait on a shielded future: a
caller cancelled while it waits leaves its write to the batch, which still runs to its
end; the waiting writes of a first write whose caller is cancelled go on without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["GroupWriter"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# (key, the batch's writes in arrival order) → one result per write, or None when the
# batch cannot be written whole (then nothing may have changed)
WriteBatch = Callable[[Hashable, list[T]], Awaitable[list[Any] | None]]
WriteAlone = Callable[[T], Awaitable[Any]]


class _Pending(Generic[T]):
    __slots__ = ("write", "future")

    def __init__(self, write: T, future: asyncio.Future[Any]) -> None:
        self.write = write
        self.future = future


class GroupWriter(Generic[T]):
    """``await submit(key, write)`` → the write's result once its batch has committed."""

    def __init__(self, write_batch: WriteBatch[T], write_alone: WriteAlone[T]) -> None:
        self._write_batch = write_batch
        self._write_alone = write_alone
        self._queues: dict[Hashable, list[_Pending[T]]] = {}  # key → writes waiting
        self.batches = 0  # batch statements tried (for tests and measurement)

    async def submit(self, key: Hashable, write: T) -> Any:
        queue = self._queues.get(key)
        if queue is not None:  # one is being written: wait for the next batch
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            queue.append(_Pending(write, future))
            return await asyncio.shield(future)
        self._queues[key] = []  # nothing being written: write it now, collect the rest
        try:
            return await self._first(key, write)
        finally:  # also if this caller is cancelled: the writes that came meanwhile go on
            rest = self._queues.pop(key)
            if rest:
                self._queues[key] = []
                task = asyncio.get_running_loop().create_task(self._run(key, rest))
                task.add_done_callback(_surface)

    async def _first(self, key: Hashable, write: T) -> Any:
        """A write that found nothing being written, in its caller's own task (no task,
        no future: what an idle key costs)."""
        self.batches += 1
        try:
            results = await self._write_batch(key, [write])
        except Exception:  # noqa: BLE001 (written alone, which meets its own error)
            results = None
        if results is None:
            return await self._write_alone(write)
        return results[0]

    async def _run(self, key: Hashable, batch: list[_Pending[T]]) -> None:
        try:
            while batch:
                self.batches += 1
                try:
                    results = await self._write_batch(key, [item.write for item in batch])
                except Exception:  # noqa: BLE001 (each write then meets its own error)
                    results = None
                if results is None:
                    for item in batch:
                        await self._alone(item)
                else:
                    for item, result in zip(batch, results, strict=True):
                        if not item.future.done():
                            item.future.set_result(result)
                batch = self._queues[key]
                self._queues[key] = []
        finally:  # empty unless the writer itself was stopped (cancelled at shutdown)
            for item in batch + self._queues.pop(key, []):
                if not item.future.done():
                    item.future.set_exception(RuntimeError("group writer stopped"))

    async def _alone(self, item: _Pending[T]) -> None:
        try:
            result = await self._write_alone(item.write)
        except Exception as exc:  # noqa: BLE001 (handed to its caller)
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)


def _surface(task: asyncio.Task[None]) -> None:
    """A writer's own failure (never a write's: those go to their callers)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("group writer failed", exc_info=task.exception())
