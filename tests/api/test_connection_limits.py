"""Slow, oversized and excess connections, with real sockets against the real server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SIM_MODELS, sim_config
from tests.support.servers import run_tollway

LIMITS = {"header_timeout": 0.5, "body_timeout": 0.8, "max_body_bytes": 1000,
          "max_header_bytes": 2048, "max_connections_per_ip": 4}  # fmt: skip


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[tuple[str, int], str]]:
    """(address, API key) of a gateway with billing (SQLite) and tight limits."""
    models = {name: {"deployments": [{**m["deployments"][0], "prices": "free"}]}
              for name, m in SIM_MODELS.items()}  # fmt: skip
    config = sim_config(server=LIMITS, admin_key="adm", billing={"enabled": True}, models=models)
    with run_tollway(config) as url:
        admin = {"Authorization": "Bearer adm"}
        account = httpx.post(f"{url}/admin/accounts", json={"name": "a", "credit_usd": 1},
                             headers=admin).json()  # fmt: skip
        key = httpx.post(f"{url}/admin/accounts/{account['id']}/keys", json={},
                         headers=admin).json()["key"]  # fmt: skip
        host, port = url.removeprefix("http://").split(":")
        yield (host, int(port)), key


@pytest.fixture(scope="module")
def address(gateway: tuple[tuple[str, int], str]) -> tuple[str, int]:
    return gateway[0]


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.settimeout(5)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (Content-Length framed); raises on timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return status, headers, body


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _error(body: bytes) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


def test_silent_connection_is_closed_after_the_header_timeout(address: Any) -> None:
    sock = _connect(address)
    started = time.monotonic()
    status, headers, body = _read_response(sock)
    assert status == 408 and _error(body)["code"] == "request_timeout"
    assert 0.4 < time.monotonic() - started < 3
    assert headers["connection"] == "close" and _closed(sock)


def test_unfinished_headers_get_408(address: Any) -> None:
    sock = _connect(address)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
    status, _, body = _read_response(sock)
    assert status == 408 and "headers" in _error(body)["message"]
    assert _closed(sock)


def test_unfinished_body_gets_408(gateway: Any) -> None:
    address, key = gateway
    sock = _connect(address)
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                 f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\r\n"
                 '{"model":'.encode())  # fmt: skip
    started = time.monotonic()
    status, _, body = _read_response(sock)
    assert status == 408 and "body" in _error(body)["message"]
    assert 0.6 < time.monotonic() - started < 3
    assert _closed(sock)


def test_declared_length_above_the_limit_is_refused_before_reading(gateway: Any) -> None:
    address, key = gateway
    for path, token in (("/v1/chat/completions", key), ("/admin/accounts", "adm")):
        sock = _connect(address)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())  # fmt: skip
        started = time.monotonic()
        status, headers, body = _read_response(sock)  # no body byte was sent
        assert status == 413 and _error(body)["code"] == "request_too_large"
        assert time.monotonic() - started < 0.4 and headers["connection"] == "close"
        assert _closed(sock)


def test_oversized_headers_get_431(address: Any) -> None:
    sock = _connect(address)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
    status, _, body = _read_response(sock)
    assert status == 431 and _error(body)["code"] == "headers_too_large"
    assert _closed(sock)


def test_malformed_http_gets_an_error_envelope(address: Any) -> None:
    for garbage in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                    b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"):
        sock = _connect(address)
        sock.sendall(garbage)
        status, _, body = _read_response(sock)
        assert status == 400 and _error(body)["code"] == "invalid_http"


def test_connections_per_address_are_capped(address: Any) -> None:
    held = [_connect(address) for _ in range(LIMITS["max_connections_per_ip"])]
    for sock in held:  # each is a live keep-alive connection
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock)[0] == 200
    extra = _connect(address)
    extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = _read_response(extra)
    assert status == 429 and _error(body)["code"] == "too_many_connections"
    assert _closed(extra)
    held.pop().close()
    time.sleep(0.2)
    again = _connect(address)
    again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_response(again)[0] == 200
    for sock in [*held, again]:
        sock.close()


def test_kept_alive_and_slow_but_timely_requests_are_served(gateway: Any) -> None:
    address, key = gateway
    sock = _connect(address)
    for _ in range(3):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock)[0] == 200
        time.sleep(0.7)  # idle between requests longer than the header timeout
    body = json.dumps({"model": "sim-echo", "messages": [{"role": "user", "content": "hi"}]})
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 f"{key}\r\nContent-Length: {len(body)}\r\n\r\n".encode())  # fmt: skip
    for i in range(0, len(body), 20):  # the body in pieces, well within the body timeout
        sock.sendall(body[i : i + 20].encode())
        time.sleep(0.05)
    status, _, answer = _read_response(sock)
    assert status == 200 and json.loads(answer)["object"] == "chat.completion"
    sock.close()


def test_headers_dripping_past_the_cap_get_431(address: Any) -> None:
    sock = _connect(address)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Drip: ")
    for _ in range(30):  # 3,000 bytes of one header value, 100 at a time
        time.sleep(0.005)
        try:
            sock.sendall(b"a" * 100)
        except (BrokenPipeError, ConnectionResetError):
            break
    status, _, body = _read_response(sock)
    assert status == 431 and _error(body)["code"] == "headers_too_large"


def test_big_headers_within_the_cap_with_a_body_in_one_read(gateway: Any) -> None:
    address, key = gateway
    body = json.dumps({"model": "sim-echo", "messages": [{"role": "user", "content": "x" * 900}]})
    sock = _connect(address)
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}"
                 f"\r\nX-Pad: {'p' * 1500}\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
    status, _, answer = _read_response(sock)
    assert status == 200, answer
