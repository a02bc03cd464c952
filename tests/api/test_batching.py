"""ReadyBatches: chunks ready together are sent together, nothing is delayed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tollway.api.batching import ReadyBatches, send_until_end


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


async def _pieces(ready_end: bool) -> AsyncIterator[bytes]:
    yield b"a"
    await asyncio.sleep(0)  # the next read
    yield b"b"
    yield b"c"
    if not ready_end:
        await asyncio.sleep(0)  # the end comes in a read of its own


def _sent(ready_end: bool) -> list[tuple[bytes, bool] | str]:
    async def run() -> list[tuple[bytes, bool] | str]:
        out: list[tuple[bytes, bool] | str] = []

        async def send(message: dict[str, object]) -> None:
            assert message["type"] == "http.response.body"
            out.append((message["body"], message["more_body"]))  # type: ignore[arg-type]

        await send_until_end(ReadyBatches(_pieces(ready_end)), send,  # type: ignore[arg-type]
                             lambda: out.append("before end"))  # fmt: skip
        return out

    return asyncio.run(run())


def test_the_batch_the_end_came_with_ends_the_response() -> None:
    # one message (one write) for the last chunks and the chunked encoding's terminator
    assert _sent(ready_end=True) == [(b"a", True), "before end", (b"bc", False)]


def test_an_end_that_comes_later_is_sent_alone() -> None:
    assert _sent(ready_end=False) == [(b"a", True), (b"bc", True), "before end", (b"", False)]
