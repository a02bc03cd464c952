"""HTTP connection limits, enforced where headers are parsed (before the ASGI app runs).

``TollwayHttpProtocol`` is uvicorn's httptools protocol plus:

- a **header timeout**: a connection that has not sent complete request headers
  within ``header_timeout`` seconds (from connecting, or from the first byte of a
  later request on a kept-alive connection) gets 408 and is closed;
- a **body timeout**: a request body not complete within ``body_timeout`` seconds
  of its headers gets 408 (if nothing was answered yet) and the connection is
  closed; the app sees a client disconnect;
- a **header size cap**: request line plus headers above ``max_header_bytes`` →
  431, closed;
- a **per-IP connection cap**: a client address with ``max_connections_per_ip``
  connections open has further ones answered 429 and closed at once;
- malformed HTTP answered with OpenAI's error envelope (uvicorn sends plain text);
- a **disconnect hook**: each request cycle carries ``DISCONNECT_HOOK``, where the app's
  ``ClientWatch`` registers itself, and the protocol calls it when the connection closes
  (or its body times out), so no task has to wait in ``receive()`` for that
  (``tollway/api/watch.py``);
- **one write for headers and first body**: uvicorn writes a response's headers as soon as
  the app sends ``http.response.start``; they now wait (at most to the end of that loop
  step) for the first body and go out with it in one system call (``_HeldStart``).

Timers cost nothing in the usual case: one is armed when a connection opens and
cancelled as soon as a complete request has arrived; a later request arriving in
one piece arms none (the check runs once after each read). The limits come from
the app (``connection_limits``, found through uvicorn's middleware wrappers);
without one the protocol behaves exactly like uvicorn's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tollway.api.watch import DISCONNECT_HOOK

__all__ = ["ConnectionLimits", "TollwayHttpProtocol", "error_response"]

Phase = Literal["idle", "headers", "body"]
_LINGER_SECONDS = 2.0


@dataclass(slots=True)
class ConnectionLimits:
    """The limits of one server (its app), and the open connections per client address."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 65536
    max_connections_per_ip: int | None = 1024
    open_by_ip: dict[str, int] = field(default_factory=dict)


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 429: b"Too Many Requests",
            431: b"Request Header Fields Too Large"}  # fmt: skip


def error_response(status: int, message: str, code: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with an OpenAI error body."""
    kind = "rate_limit_error" if status == 429 else "invalid_request_error"
    body = orjson.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    )
    return b"".join([
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ])  # fmt: skip


class _Refused(Exception):
    """Raised from a parser callback after answering, to stop parsing the connection."""


def _limits_of(app: Any) -> ConnectionLimits | None:
    for _ in range(8):  # uvicorn wraps the app in a few middlewares, each with .app
        limits = getattr(app, "connection_limits", None)
        if isinstance(limits, ConnectionLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _hang_up(cycle: Any) -> None:
    """Tell the request's watch (if one is registered) that its client is gone."""
    watch = getattr(cycle, DISCONNECT_HOOK, None)
    if watch is not None:
        watch.disconnected()


class _HeldStart:
    """A response cycle's transport until its first two writes have gone out as one.

    uvicorn writes a response's status line and headers as soon as the app sends
    ``http.response.start``, and its body on the next message: two ``write`` system
    calls, where tollway's handlers always send the first body in the same step. The
    headers wait here for that next write and go out with it in one ``writelines``
    (one system call); if nothing follows in this step, a ``call_soon`` sends them
    alone. Then the cycle writes to the connection's transport again directly.
    """

    __slots__ = ("_cycle", "_held", "_loop", "_transport")

    def __init__(
        self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop  # (not get_running_loop(): on Python 3.11 that is a getpid call)
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:  # the first write (the headers; or a 100 Continue): wait a step
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._cycle.transport = self._transport
        if data:
            self._transport.writelines((held, data))
        else:  # (an empty body: a HEAD, 204 or 304 answer)
            self._transport.write(held)

    def flush(self) -> None:
        """Send what waits (alone) and hand the cycle its transport back."""
        held, self._held = self._held, None
        if self._cycle.transport is self:
            self._cycle.transport = self._transport
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()


def _flush_held(cycle: Any) -> None:
    """Let a cycle's held headers out before the protocol writes or closes itself."""
    transport = getattr(cycle, "transport", None)
    if type(transport) is _HeldStart:
        transport.flush()


class TollwayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with tollway's connection limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits_of(self.app)
        self._phase: Phase = "idle"
        self._timer: asyncio.TimerHandle | None = None
        self._timer_phase: Phase = "idle"
        self._header_bytes = 0
        self._chunk = 0
        self._ip: str | None = None
        self._refused = False

    # -- connection ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self._limits
        if limits is None:
            return
        ip = self.client[0] if self.client else None
        cap = limits.max_connections_per_ip
        if ip is not None and cap is not None:
            if limits.open_by_ip.get(ip, 0) >= cap:
                self._refuse(429, f"Too many connections from your address (at most {cap}).",
                             "too_many_connections")  # fmt: skip
                return
            limits.open_by_ip[ip] = limits.open_by_ip.get(ip, 0) + 1
            self._ip = ip
        self._phase = "headers"
        self._arm("headers", limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        limits, ip = self._limits, self._ip
        if limits is not None and ip is not None:
            left = limits.open_by_ip.get(ip, 1) - 1
            if left > 0:
                limits.open_by_ip[ip] = left
            else:
                limits.open_by_ip.pop(ip, None)
            self._ip = None
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:
            _hang_up(cycle)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing: discard what the client still sends
        entry = self._phase
        self._chunk = len(data)
        try:
            HttpToolsProtocol.data_received(self, data)
        except _Refused:
            return
        limits = self._limits
        if limits is None or self._refused:
            return
        # where the connection stands, from uvicorn's own state (no per-callback hooks)
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            phase: Phase = "headers"  # a request began; its headers are incomplete
        elif cycle.more_body:
            phase = "body"  # (also when answered early: the rest must still arrive in time)
        else:
            phase = "idle"
        self._phase = phase
        if phase == "idle":
            if self._timer is not None:
                self._disarm()
            return
        if phase == "headers" and entry == "headers":
            # the whole chunk is header bytes (the request began in an earlier chunk or
            # at connect and its headers are still incomplete)
            self._header_bytes += len(data)
            if self._header_bytes > limits.max_header_bytes:
                self._refuse_headers(limits)
                return
        if phase != self._timer_phase:
            timeout = limits.header_timeout if phase == "headers" else limits.body_timeout
            self._arm(phase, timeout)

    # -- parser callback (the base method called directly: cheaper than super()) ----
    def on_headers_complete(self) -> None:
        limits = self._limits
        if limits is not None and self._header_bytes + self._chunk > limits.max_header_bytes:
            # possibly too large (this chunk was big): count them all exactly
            size = len(self.url) + sum(len(n) + len(v) for n, v in self.headers)
            if size > limits.max_header_bytes:
                self._refuse_headers(limits)
                raise _Refused  # stops the parser: no app is started for this request
        self._header_bytes = 0
        HttpToolsProtocol.on_headers_complete(self)
        cycle = self.cycle
        if cycle is not None:  # (None after an upgrade request, which makes none)
            setattr(cycle, DISCONNECT_HOOK, None)  # no watch yet, but one may come
            cycle.transport = _HeldStart(  # type: ignore[assignment]
                self.transport, cycle, self.loop)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"{msg} The request is not valid HTTP/1.1.", "invalid_http")

    # -- limits ----------------------------------------------------------------------
    def _refuse_headers(self, limits: ConnectionLimits) -> None:
        self._refuse(431, f"The request's URL and headers exceed {limits.max_header_bytes} "
                     "bytes.", "headers_too_large")  # fmt: skip

    def _arm(self, phase: Phase, timeout: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(timeout, self._expired)
        self._timer_phase = phase

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_phase = "idle"

    def _expired(self) -> None:
        self._timer = None
        phase = self._timer_phase
        self._timer_phase = "idle"
        if self.transport.is_closing() or phase == "idle":
            return
        limits = self._limits
        assert limits is not None
        cycle = self.cycle
        if phase == "headers":
            if cycle is not None and not cycle.response_complete:
                # a pipelined request waits behind one still being answered
                self._arm("headers", limits.header_timeout)
                return
            self._refuse(408, f"The request headers did not arrive within "
                         f"{limits.header_timeout:g} s.", "request_timeout")  # fmt: skip
            return
        answered = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() now reports a disconnect
            cycle.message_event.set()
            _hang_up(cycle)
        if answered:
            _flush_held(cycle)
            self.transport.close()
        else:
            self._refuse(408, f"The request body did not arrive within "
                         f"{limits.body_timeout:g} s.", "request_timeout")  # fmt: skip

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer with an error envelope and close the connection.

        A lingering close: the answer and a FIN go out, what the client still sends is
        discarded, and the socket closes when the client closes its side or after
        ``_LINGER_SECONDS``; closing at once with unread input would send a reset that
        can destroy the answer before the client reads it.
        """
        if self._refused:
            return
        self._refused = True
        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        _flush_held(self.cycle)  # a response's headers still waiting go first
        transport.write(error_response(status, message, code))
        try:
            transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):  # TLS cannot half-close
            transport.close()
            return
        self._timer = self.loop.call_later(_LINGER_SECONDS, transport.close)
