"""Upstream stream reads, coalesced while the event loop is saturated.

A streamed answer's chunks arrive one at a time, tens of milliseconds apart, and each
one costs a full trip through the process: a socket read, aiohttp's parser, a wake-up
of the request's task, the pipeline, an SSE write. With hundreds of streams open that
per-chunk cost fills the single event loop; every loop iteration then lasts tens of
milliseconds and everything waits behind it, new requests most of all (each needs
several iterations before its first token).

``read_chunks`` replaces ``resp.content.iter_any()``. While the loop is not behind, it
is exactly that: each read is relayed as it comes. While the loop is behind
(``LoadGauge``: a callback made ready waits ``LAG_S`` or more for its turn), after
relaying a read it stops reading that upstream socket for ``window`` seconds, so the
chunks that arrive meanwhile wait in the kernel and come in one read, one wake-up, one
write to the client. A token then reaches the client up to ``window`` later than it could have
(``server.coalesce_under_load_ms``, 0 turns it off); the first token never waits (the
pause only follows a relayed read) and nothing is changed or dropped: the bytes are
the same, in the same order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["LAG_S", "LoadGauge", "configure", "gauge", "loop_behind", "read_chunks", "window"]

LAG_S = 0.005  # a ready callback waiting this long means the loop is behind: coalesce
_TICK_S = 0.005  # how often the gauge looks, while streams are being read
_IDLE_TICKS = 200  # a second without a read: stop looking
_window_s = 0.04


def configure(window_ms: float) -> None:
    """Set the coalescing window (``server.coalesce_under_load_ms``; 0: never coalesce)."""
    global _window_s
    _window_s = max(0.0, window_ms) / 1000


def window() -> float:
    """The coalescing window in seconds (0: off)."""
    return _window_s


class LoadGauge:
    """Whether one event loop is behind: every ``_TICK_S`` it notes how long a callback
    made ready waits for its turn (``lag``).

    It ticks only while streams are being read (a read marks ``seen``; after ``_IDLE_TICKS``
    ticks without one it stops), so an idle process sleeps as before."""

    __slots__ = ("_due", "_handle", "_idle", "_loop", "busy", "lag", "seen")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due = 0.0
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._idle = 0
        self.busy = False
        self.lag = 0.0  # how long the last probe waited (s)
        self.seen = False

    @property
    def ticking(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Tick (if not ticking yet)."""
        self.seen = True
        if self._handle is None:
            self._idle = 0
            self._schedule()

    def stop(self) -> None:
        """Stop ticking; not busy."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.busy = False
        self.lag = 0.0

    def _schedule(self) -> None:
        self._handle = self._loop.call_later(_TICK_S, self._tick)

    def _tick(self) -> None:
        # how long a callback that is ready now waits for its turn: what each step of a
        # new request waits (measured with the clock: uvloop's loop.time() is read once
        # an iteration, in whole milliseconds)
        self._due = time.monotonic()
        self._handle = self._loop.call_soon(self._answered)

    def _answered(self) -> None:
        self.lag = time.monotonic() - self._due
        self.busy = self.lag >= LAG_S
        if self.seen:
            self.seen = False
            self._idle = 0
        else:
            self._idle += 1
            if self._idle >= _IDLE_TICKS:
                self.stop()
                return
        self._schedule()


_GAUGES: dict[asyncio.AbstractEventLoop, LoadGauge] = {}


def gauge() -> LoadGauge:
    """The running loop's gauge."""
    loop = asyncio.get_running_loop()
    found = _GAUGES.get(loop)
    if found is None:
        for old in [k for k in _GAUGES if k.is_closed()]:
            del _GAUGES[old]
        found = _GAUGES[loop] = LoadGauge(loop)
    return found


def loop_behind() -> bool:
    """Whether the running loop's gauge last found it behind (False when not measured:
    no stream read lately)."""
    found = _GAUGES.get(asyncio.get_running_loop())
    return found is not None and found.busy


def read_chunks(resp: Any) -> AsyncIterator[bytes]:
    """The body of a streamed upstream response (aiohttp), read by read, coalesced
    while the loop is behind (see the top). Not a generator: nothing to close when the
    reader stops early (at ``[DONE]``, a block, a disconnect)."""
    content = resp.content
    span = _window_s
    if span <= 0:
        return content.iter_any()  # type: ignore[no-any-return]
    return _Paced(resp, content, gauge(), span)


class _Paced:
    """``read_chunks``'s iterator: ``readany`` until the end, pausing after a relayed
    read while the gauge says the loop is behind."""

    __slots__ = ("_content", "_load", "_read", "_resp", "_span")

    def __init__(self, resp: Any, content: Any, load: LoadGauge, span: float) -> None:
        self._resp = resp
        self._content = content
        self._load = load
        self._span = span
        self._read = False  # a read was relayed: the next may wait
        load.start()

    def __aiter__(self) -> _Paced:
        return self

    async def __anext__(self) -> bytes:
        load = self._load
        paused = _pause(self._resp) if self._read and load.busy else None
        load.seen = True
        if load._handle is None:  # the gauge stopped while this stream waited
            load.start()
        if paused is None:
            data: bytes = await self._content.readany()
        else:
            # a timer resumes the socket; the read waits meanwhile (one wake-up of the
            # request's task a read, not two: a sleep's end, then the data)
            timer = load._loop.call_later(self._span, _resume, paused)
            try:
                data = await self._content.readany()
            except BaseException:  # cancelled (the client left): the socket resumes now
                timer.cancel()
                _resume(paused)
                raise
        if not data:
            raise StopAsyncIteration
        self._read = True
        return data


def _pause(resp: Any) -> Any:
    """Stop reading ``resp``'s socket; its transport, or None when it is left as it is
    (closed, released, or paused already: by aiohttp's own flow control, or by a pause
    still running whose timer resumes it)."""
    connection = resp.connection
    transport = connection.transport if connection is not None else None
    if transport is None or transport.is_closing() or not transport.is_reading():
        return None
    transport.pause_reading()
    return transport


def _resume(transport: Any) -> None:
    """Read the socket again (a closed one is left alone)."""
    if not transport.is_closing():
        transport.resume_reading()
