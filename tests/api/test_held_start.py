"""A response's headers go out with its first body write: one system call, not two.

A real uvicorn server (uvloop, httptools) with tollway's protocol, whose connection
transport is wrapped to record every write, and raw sockets as clients: the bytes a
client receives are exactly uvicorn's, and a response whose first body follows its
start in the same step takes one write; headers whose body comes later still go out
at once (end of that step), as does a ``100 Continue`` (after which the response's
writes are as uvicorn's own).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.servers import serve_app
from tollway.api.protocol import TollwayHttpProtocol, _HeldStart

WRITES: list[tuple[str, bytes]] = []  # (method, bytes) in the order the server wrote them


class _Recording:
    """The connection's transport, recording what is written through it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(("write", bytes(data)))
        self._transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = [bytes(p) for p in parts]
        WRITES.append(("writelines", b"".join(parts)))
        self._transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _RecordingProtocol(TollwayHttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _Recording(transport)  # type: ignore[assignment]


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":  # reads the body (the client expects 100 Continue first)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"5")]})
    if path == "/late":
        await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    with serve_app(_app, _RecordingProtocol) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _request(address: tuple[str, int], head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(head.encode() + body)
    return sock


def _read_until(sock: socket.socket, end: bytes, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _wait_for_writes(count: int) -> None:
    deadline = time.monotonic() + 5
    while len(WRITES) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_whole_response_is_one_write(address: tuple[str, int]) -> None:
    WRITES.clear()
    sock = _request(address, "GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
    data = _read_until(sock, b"hello")
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhello")
    assert b"content-length: 5\r\n" in data
    assert WRITES == [("writelines", data)]


def test_each_response_of_a_kept_alive_connection_is_one_write(
    address: tuple[str, int],
) -> None:
    WRITES.clear()
    sock = _request(address, "GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
    first = _read_until(sock, b"hello")
    sock.sendall(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
    second = _read_until(sock, b"hello")
    sock.close()
    assert first == second
    assert WRITES == [("writelines", first), ("writelines", second)]


def test_headers_whose_body_comes_later_are_not_held_back(address: tuple[str, int]) -> None:
    WRITES.clear()
    sock = _request(address, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    head = _read_until(sock, b"\r\n\r\n")
    took = time.monotonic() - started
    body = _read_until(sock, b"hello")
    sock.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"hello"
    assert took < 0.25  # the app sends its body 0.3 s after its headers
    assert WRITES == [("write", head), ("write", b"hello")]


def test_a_stream_starts_with_its_headers_and_first_chunk_in_one_write(
    address: tuple[str, int],
) -> None:
    WRITES.clear()
    sock = _request(address, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    data = _read_until(sock, b"0\r\n\r\n")
    sock.close()
    head, _, chunks = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert chunks == b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"
    _wait_for_writes(3)
    assert [method for method, _ in WRITES] == ["writelines", "write", "write"]
    assert WRITES[0][1] == head + b"\r\n\r\n9\r\ndata: 1\n\n\r\n"


def test_100_continue_goes_out_before_the_body_arrives(address: tuple[str, int]) -> None:
    WRITES.clear()
    sock = _request(address, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                    "Expect: 100-continue\r\n\r\n")  # fmt: skip
    interim = _read_until(sock, b"\r\n\r\n", timeout=2)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"ping")
    data = _read_until(sock, b"ping")
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nping")
    # the interim answer went out alone (its step ended): the rest as before this change
    head, _, body = data.partition(b"\r\n\r\n")
    assert WRITES == [("write", interim), ("write", head + b"\r\n\r\n"), ("write", body)]


class _Transport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, parts: Any) -> None:
        self.calls.append(("writelines", b"".join(parts)))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True


class _Cycle:
    transport: Any = None


def _held() -> tuple[_Transport, _Cycle, _HeldStart]:
    """A recording transport, a cycle, and the cycle's ``_HeldStart`` over the transport."""
    raw, cycle = _Transport(), _Cycle()
    cycle.transport = held = _HeldStart(raw, cycle, asyncio.get_running_loop())  # type: ignore[arg-type]
    return raw, cycle, held


def test_closing_sends_held_headers_first() -> None:
    asyncio.run(_closing_sends_held_headers_first())


async def _closing_sends_held_headers_first() -> None:
    raw, cycle, held = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.close()
    assert raw.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n"), ("close", b"")]
    assert cycle.transport is raw
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert raw.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n"), ("close", b"")]


def test_an_empty_body_write_sends_the_headers_alone() -> None:
    asyncio.run(_an_empty_body_write_sends_the_headers_alone())


async def _an_empty_body_write_sends_the_headers_alone() -> None:
    raw, cycle, held = _held()
    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.write(b"")
    assert raw.calls == [("write", b"HTTP/1.1 204 No Content\r\n\r\n")]
    assert cycle.transport is raw


def test_nothing_is_written_to_a_closing_transport() -> None:
    asyncio.run(_nothing_is_written_to_a_closing_transport())


async def _nothing_is_written_to_a_closing_transport() -> None:
    raw, cycle, held = _held()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    raw.closing = True  # the client went away before the end of the step
    await asyncio.sleep(0)
    assert raw.calls == [] and cycle.transport is raw


def test_pipelined_head_and_get_answers_come_in_order(address: tuple[str, int]) -> None:
    """A HEAD answer has no body write: its headers go out at the end of the step, before
    the next pipelined request's answer (whose task runs after that)."""
    WRITES.clear()
    sock = _request(address, "HEAD /whole HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /whole HTTP/1.1\r\nHost: x\r\n\r\n"
                    "HEAD /late HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /late HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
    data = b""
    while data.count(b"hello") < 2:
        data += _read_until(sock, b"hello")
    sock.close()
    answers = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 4
    assert [a.endswith(b"\r\n\r\nhello") for a in answers] == [False, True, False, True]
    assert all(a.endswith(b"\r\n\r\n") for a in answers[::2])
    assert b"".join(body for _, body in WRITES) == data
