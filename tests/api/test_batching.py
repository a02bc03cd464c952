"""ReadyBatches: chunks ready together are sent together, nothing is delayed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tollway.api.batching import ReadyBatches


async def _source(log: list[str], gate: asyncio.Event) -> AsyncIterator[int]:
    try:
        for i in range(3):
            yield i  # three ready at once (one "network read")
        await gate.wait()  # the next read
        for i in range(3, 5):
            yield i
        await asyncio.sleep(0)  # a bare yield
        yield 5
    finally:
        log.append("closed")
        await asyncio.sleep(0)  # cleanup that awaits, like closing an upstream


def test_batches_follow_readiness() -> None:
    async def run() -> list[list[int]]:
        log: list[str] = []
        gate = asyncio.Event()
        batches = ReadyBatches(_source(log, gate))
        got = [await batches.next_batch()]
        asyncio.get_running_loop().call_later(0.01, gate.set)
        while batch := await batches.next_batch():
            got.append(batch)
        await batches.aclose()
        assert log == ["closed"]
        return got

    assert asyncio.run(run()) == [[0, 1, 2], [3, 4], [5]]


def test_limit_caps_a_batch() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def run() -> list[list[int]]:
        batches = ReadyBatches(numbers(), limit=4)
        out = []
        while batch := await batches.next_batch():
            out.append(batch)
        return out

    assert asyncio.run(run()) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_cancellation_reaches_the_source_and_aclose_cleans_a_suspended_step() -> None:
    async def run() -> list[str]:
        log: list[str] = []
        gate = asyncio.Event()
        batches = ReadyBatches(_source(log, gate))
        assert await batches.next_batch() == [0, 1, 2]
        task = asyncio.ensure_future(batches.next_batch())  # suspends on the gate
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["closed"]
        return log

    asyncio.run(run())

    async def pending_then_close() -> list[str]:
        log: list[str] = []
        gate = asyncio.Event()
        batches = ReadyBatches(_source(log, gate))
        await batches.next_batch()
        gate.set()
        assert await batches.next_batch() == [3, 4]  # leaves a step suspended on sleep(0)
        await batches.aclose()
        return log

    assert asyncio.run(pending_then_close()) == ["closed"]
