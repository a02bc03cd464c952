"""Upstream reads coalesced while the loop is behind (``tollway/providers/pacing.py``).

A real aiohttp server on 127.0.0.1 streams numbered chunks ``GAP_S`` apart; the
client reads them through ``read_chunks`` in the same process, with the loop idle or
kept behind by a task that blocks it in turns (as hundreds of streams' chunk work do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tollway.providers import pacing

CHUNKS = 30
GAP_S = 0.01


def _chunk(i: int) -> bytes:
    return b"data: {\"n\": %d}\n\n" % i


async def _server(chunks: int = CHUNKS, gap: float = GAP_S) -> tuple[web.AppRunner, str]:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(chunks):
            await resp.write(_chunk(i))
            await asyncio.sleep(gap)
        await resp.write_eof()
        return resp

    async def whole(request: web.Request) -> web.Response:
        return web.Response(body=b"whole")

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/whole", whole)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _hog(stop: asyncio.Event, block_s: float = 0.008) -> None:
    """Keep the loop behind: block it ``block_s`` at a time, letting others run between."""
    while not stop.is_set():
        time.sleep(block_s)  # noqa: ASYNC251 - the point: a busy loop
        await asyncio.sleep(0)


async def _read_all(
    url: str, reader: Callable[[Any], AsyncIterator[bytes]] = pacing.read_chunks
) -> tuple[bytes, list[float]]:
    """The whole body and the time of each read."""
    async with aiohttp.ClientSession() as session, session.get(url + "/stream") as resp:
        parts, times = [], []
        async for data in reader(resp):
            parts.append(data)
            times.append(time.perf_counter())
        return b"".join(parts), times


def _run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _window() -> Any:
    before = pacing.window()
    pacing.configure(40)
    yield
    pacing.configure(before * 1000)


EXPECTED = b"".join(_chunk(i) for i in range(CHUNKS))


def test_an_idle_loop_relays_every_read_as_it_comes() -> None:
    async def body() -> tuple[bytes, list[float], bool]:
        runner, url = await _server()
        try:
            data, times = await _read_all(url)
            return data, times, pacing.gauge().busy
        finally:
            await runner.cleanup()

    data, times, busy = _run(body)
    assert data == EXPECTED
    assert not busy
    assert len(times) >= CHUNKS - 2  # one read a chunk (two may meet in one read)


def test_a_loop_behind_reads_each_stream_less_often_and_loses_nothing() -> None:
    async def body() -> tuple[bytes, list[float], list[float]]:
        runner, url = await _server()
        stop = asyncio.Event()
        hog = asyncio.create_task(_hog(stop))
        lags: list[float] = []
        try:
            data, times = await _read_all(url)
            lags.append(pacing.gauge().lag)
            return data, times, lags
        finally:
            stop.set()
            await hog
            await runner.cleanup()

    data, times, lags = _run(body)
    assert data == EXPECTED  # the same bytes, in order
    assert len(times) <= CHUNKS // 2, len(times)  # coalesced: at most half as many reads
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # a read waits for the window (and the loop's own lateness), never much longer
    assert max(gaps) < 0.04 + 0.1, max(gaps)


def test_window_zero_is_aiohttps_own_reading() -> None:
    pacing.configure(0)

    async def body() -> tuple[bytes, list[float], bool]:
        runner, url = await _server()
        stop = asyncio.Event()
        hog = asyncio.create_task(_hog(stop))
        try:
            data, times = await _read_all(url)
            return data, times, pacing.gauge().ticking
        finally:
            stop.set()
            await hog
            await runner.cleanup()

    data, times, ticking = _run(body)
    assert data == EXPECTED
    assert not ticking  # no gauge while off


def test_the_gauge_stops_ticking_when_no_stream_is_read() -> None:
    async def body() -> tuple[bool, bool]:
        runner, url = await _server(chunks=3, gap=0.001)
        try:
            await _read_all(url)
            ticking_after_read = pacing.gauge().ticking
            await asyncio.sleep(pacing._TICK_S * (pacing._IDLE_TICKS + 20))
            return ticking_after_read, pacing.gauge().ticking
        finally:
            await runner.cleanup()

    after_read, later = _run(body)
    assert after_read
    assert not later


def test_a_reader_cancelled_while_paused_leaves_the_connection_usable() -> None:
    """The client leaves while its stream's socket is paused: the socket is resumed (or
    closed with the response), and the pool's next request is answered in full."""

    async def body() -> tuple[bool, bytes]:
        runner, url = await _server(chunks=200)
        stop = asyncio.Event()
        hog = asyncio.create_task(_hog(stop))
        try:
            async with aiohttp.ClientSession() as session:
                resp = await session.get(url + "/stream")
                paused = asyncio.Event()
                saw_pause: list[bool] = []

                async def read() -> None:
                    async for _ in pacing.read_chunks(resp):
                        transport = resp.connection.transport if resp.connection else None
                        if transport is not None and not transport.is_reading():
                            saw_pause.append(True)
                        if pacing.gauge().busy:
                            paused.set()

                task = asyncio.create_task(read())
                await asyncio.wait_for(paused.wait(), 5)
                await asyncio.sleep(0.01)  # into a pause
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                transport = resp.connection.transport if resp.connection else None
                reading = transport is None or transport.is_reading() or transport.is_closing()
                resp.close()
                stop.set()
                await hog
                async with session.get(url + "/whole") as again:
                    return reading, await again.read()
        finally:
            stop.set()
            await runner.cleanup()

    reading, again = _run(body)
    assert reading
    assert again == b"whole"


def test_the_gauge_reads_lateness() -> None:
    async def body() -> tuple[bool, bool]:
        load = pacing.gauge()
        load.start()
        await asyncio.sleep(0.03)
        idle = load.busy
        stop = asyncio.Event()
        hog = asyncio.create_task(_hog(stop, 0.012))
        deadline = time.monotonic() + 2
        busy = False
        while time.monotonic() < deadline and not busy:
            load.seen = True
            await asyncio.sleep(0)
            busy = load.busy
        stop.set()
        await hog
        load.stop()
        return idle, busy

    idle, busy = _run(body)
    assert not idle
    assert busy
