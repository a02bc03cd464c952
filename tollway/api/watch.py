"""Noticing, cheaply, that a client went away while its response is being made.

ASGI tells an app about a disconnect only through ``receive()``, so noticing it
generally means a task waiting in ``receive()``. Under tollway's own server there is a
cheaper way: its HTTP protocol (``TollwayHttpProtocol``) calls the watch of the request
its connection is serving when the connection closes (``DISCONNECT_HOOK``, an attribute of
uvicorn's request cycle, which ``receive`` is a method of), and the watch cancels the
request's task at once, which closes the pipeline and so the upstream connection, whatever
the request is waiting for (the first token, a whole non-streamed answer, a send). A
registration is an attribute write; nothing else happens unless the client leaves.

Under another ASGI server (or when the client left before the watch started) a task
costs several microseconds to create and cancel, which most requests (done in a few
milliseconds) do not need; so such a request's ``ClientWatch`` is only registered, in a
list, and one timer per event loop gives each request still running ``WATCH_AFTER`` to
``2 × WATCH_AFTER`` seconds later its watcher task, which waits for ``http.disconnect``.
Under load most requests run longer than that, and the hook saves each a task, its wait
and its cancellation (streams of 50 chunks, 64 at a time: ≈ 1.5 % of the CPU a stream).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from tollway.api.http import ClientGone, Receive

__all__ = ["DISCONNECT_HOOK", "WATCH_AFTER", "ClientWatch"]

WATCH_AFTER = 0.02  # seconds
# the attribute of a request cycle of tollway's protocol that names its ClientWatch
DISCONNECT_HOOK = "tollway_watch"


class ClientWatch:
    """One request's watch: ``start`` at admission, ``stop`` before the last send.

    Steps that must not be cut in the middle (admission: a reservation committed
    but not yet recorded would be held until recovery) run between ``defer()``
    and ``resume()``, which raises ``ClientGone`` if the client left meanwhile.
    """

    __slots__ = ("gone", "stopped", "_cycle", "_deferred", "_receive", "_request", "_task")

    def __init__(self) -> None:
        self.gone = False
        self.stopped = False
        self._deferred = False
        self._task: asyncio.Task[None] | None = None
        self._cycle: Any = None

    def start(self, receive: Receive) -> None:
        """Watch from now on (the request's body has been read)."""
        request = asyncio.current_task()
        assert request is not None
        self._receive = receive
        self._request = request
        cycle: Any = getattr(receive, "__self__", None)
        # a cycle of tollway's protocol has the hook (None) from its start; one already
        # disconnected is left to the watcher task, which finds that out at once
        if getattr(cycle, DISCONNECT_HOOK, False) is None and not cycle.disconnected:
            setattr(cycle, DISCONNECT_HOOK, self)
            self._cycle = cycle
            return
        _ticker().add(self)

    def disconnected(self) -> None:
        """The client's connection closed (the protocol calls this through the hook)."""
        self.gone = True
        if not self._deferred and not self.stopped:
            self._request.cancel()

    def arm(self) -> None:
        """Create the watcher task (the ticker calls it for a request still running)."""
        if not self.stopped and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        receive = self._receive
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected()
                return

    def defer(self) -> None:
        """Until ``resume()``, a disconnect is only noted."""
        self._deferred = True

    def resume(self) -> None:
        """Cancel on disconnect again; ``ClientGone`` if the client left meanwhile."""
        self._deferred = False
        if self.gone:
            raise ClientGone()

    def stop(self) -> None:
        """Stop watching (before the response's last send, which ends the cycle)."""
        self.stopped = True
        cycle = self._cycle
        if cycle is not None:
            self._cycle = None
            setattr(cycle, DISCONNECT_HOOK, None)
        task = self._task
        if task is not None:
            self._task = None
            task.cancel()


class _Ticker:
    """Arms the watches of one event loop that are older than one tick."""

    __slots__ = ("_old", "_timer", "_young")

    def __init__(self) -> None:
        self._young: list[ClientWatch] = []
        self._old: list[ClientWatch] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: ClientWatch) -> None:
        self._young.append(watch)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._tick)

    def _tick(self) -> None:
        self._timer = None
        for watch in self._old:
            if not watch.stopped:
                watch.arm()
        self._old, self._young = self._young, []
        if self._old:
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self._tick)


# One ticker per event loop (a process usually runs one; tests run several).
_TICKERS: weakref.WeakKeyDictionary[Any, _Ticker] = weakref.WeakKeyDictionary()
_last: tuple[Any, _Ticker] = (None, _Ticker())  # the last loop's: skips the weak lookup


def _ticker() -> _Ticker:
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last[0] is loop:
        return last[1]
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = _Ticker()
    _last = (loop, ticker)
    return ticker
