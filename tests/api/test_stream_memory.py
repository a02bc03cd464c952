"""A streaming request holds about one copy of its body while it streams, not several.

A request's body used to be held three more times for as long as its answer streamed: the
bytes read from the client, the validated pydantic model, and the upstream request's bytes,
which orjson leaves in a buffer of up to 16 times their length (it never trims it). With a
16 KiB prompt a stream held 336 KiB; now 63 KiB. The upstream here is the benchmark's, in
its own process, so that what this process holds is tollway's and the test's own.
"""

from __future__ import annotations

import socket
import tracemalloc
from pathlib import Path

import orjson

from bench import procs
from tests.support.books import raw_request
from tests.support.servers import free_port, run_tollway

PROMPT = 256 * 1024
STREAMS = 4


def _first_event(sock: socket.socket) -> bytes:
    got = b""
    while b"data:" not in got:
        data = sock.recv(65536)
        assert data, got
        got += data
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return got


def _send(url: str, body: bytes) -> socket.socket:
    head = (f"POST /v1/chat/completions HTTP/1.1\nHost: t\nContent-Type: application/json\n"
            f"Content-Length: {len(body)}\n")  # fmt: skip
    return raw_request(url, head, body)


def test_a_stream_holds_about_one_copy_of_its_request(tmp_path: Path) -> None:
    port = free_port()
    upstream = procs.start_upstream(port, tmp_path)
    try:
        config = {
            "providers": {"up": {"type": "openai", "api_key": "x",
                                 "base_url": f"http://127.0.0.1:{port}/v1"}},
            # 400 chunks 50 ms apart: the streams stay open while they are measured
            "models": {"m": {"deployments": [{"provider": "up", "model": "bench-upstream-d50"}]}},
        }  # fmt: skip
        body = orjson.dumps({
            "model": "m", "max_tokens": 400, "stream": True,
            "messages": [{"role": "user", "content": "x " * (PROMPT // 2)}],
        })  # fmt: skip
        with run_tollway(config) as url:
            warm = _send(url, body)  # imports, connection pools
            _first_event(warm)
            warm.close()
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                socks = [_send(url, body) for _ in range(STREAMS)]
                for sock in socks:
                    _first_event(sock)
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            for sock in socks:
                sock.close()
    finally:
        upstream.stop()
    mine = (tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, tracemalloc.__file__))
    held = sum(s.size_diff for s in after.filter_traces(mine).compare_to(
        before.filter_traces(mine), "filename"))  # fmt: skip
    # the parsed body itself is one copy (the prompt as a str); anything near 2 is another
    assert held < STREAMS * 1.6 * PROMPT, f"{held / STREAMS / 1024:.0f} KiB held per stream"
