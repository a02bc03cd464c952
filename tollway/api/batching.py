"""Read an async iterator in batches of what is ready *now*, without extra tasks.

When an upstream delivers several SSE events in one network read, the whole
pipeline produces their chunks without waiting; sending them in one ASGI
``send`` costs one ``write`` syscall instead of one per chunk. ``ReadyBatches``
finds that boundary by stepping the iterator's ``__anext__`` awaitable by hand:
if a step completes without suspending, its value is ready; if it suspends, the
batch so far is returned and the suspended step is finished on the next call,
awaiting the very future it is blocked on (exactly what a Task would do).
Chunks are never delayed: a batch is handed out as soon as nothing more is ready.

``send_until_end`` sends the batches of a streamed response; the batch that the
iterator's end came with carries the response's end too, so the chunked encoding's
terminator goes out in that batch's write, not in one of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, Generic, TypeVar

from tollway.api.http import Send

__all__ = ["ReadyBatches", "send_until_end"]

T = TypeVar("T")


class _Suspend:
    """Suspend the current task on ``blocker`` (a future, or None for a bare yield)."""

    __slots__ = ("blocker",)

    def __init__(self, blocker: Any) -> None:
        self.blocker = blocker

    def __await__(self) -> Generator[Any, None, None]:
        yield self.blocker


class ReadyBatches(Generic[T]):
    """``await next_batch()`` → the next non-empty list of items, or [] at the end."""

    __slots__ = ("_iterator", "_limit", "_step", "_blocker", "_ended")

    def __init__(self, iterator: AsyncIterator[T], limit: int = 64) -> None:
        self._iterator = iterator
        self._limit = limit
        self._step: Any = None  # a started, suspended __anext__ awaitable
        self._blocker: Any = None
        self._ended = False

    @property
    def ended(self) -> bool:
        """The iterator has ended: the batch last handed out was its last."""
        return self._ended

    async def next_batch(self) -> list[T]:
        out: list[T] = []
        if self._ended:
            return out
        if self._step is not None:
            step, self._step = self._step, None
            try:
                out.append(await self._finish(step, self._blocker))
            except StopAsyncIteration:
                self._ended = True
                return out
        while len(out) < self._limit:
            step = self._iterator.__anext__()
            try:
                blocker = step.send(None)  # type: ignore[attr-defined]
            except StopIteration as done:
                out.append(done.value)
                continue
            except StopAsyncIteration:
                self._ended = True
                return out
            if not out:  # nothing ready yet: wait for this one right away
                try:
                    out.append(await self._finish(step, blocker))
                except StopAsyncIteration:
                    self._ended = True
                    return out
                continue
            self._step, self._blocker = step, blocker
            break
        return out

    @staticmethod
    async def _finish(step: Any, blocker: Any) -> T:
        """Drive a suspended step to its value, as the task would have."""
        while True:
            try:
                await _Suspend(blocker)
            except BaseException as exc:  # noqa: BLE001 (cancellation goes where the step waits)
                try:
                    blocker = step.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                continue
            try:
                blocker = step.send(None)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Cancel a suspended step (its stages clean up as on cancellation), then close."""
        import asyncio

        if self._step is not None:
            step, self._step = self._step, None
            try:
                blocker = step.throw(asyncio.CancelledError())
                # it caught the cancellation and awaits more (cleanup in finally blocks)
                await self._finish(step, blocker)
            except (asyncio.CancelledError, StopIteration, StopAsyncIteration):
                pass
        close = getattr(self._iterator, "aclose", None)
        if close is not None:
            await close()


async def send_until_end(
    batches: ReadyBatches[bytes], send: Send, before_end: Callable[[], None]
) -> None:
    """Send each batch as one ASGI body message (one write) until the iterator ends; the
    last batch, when the end came with it, carries ``more_body: False`` (else an empty
    message does). ``before_end()`` runs just before the message that ends the response."""
    while batch := await batches.next_batch():
        body = batch[0] if len(batch) == 1 else b"".join(batch)
        if batches.ended:
            before_end()
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send({"type": "http.response.body", "body": body, "more_body": True})
    before_end()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
