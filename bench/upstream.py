"""A fast, cheap OpenAI-compatible upstream: raw asyncio HTTP/1.1 on uvloop.

``python -m bench.upstream --port 18081`` serves ``POST /v1/chat/completions``,
``POST /v1/messages`` (Anthropic's format, ``bench.upstream_messages``) and
``GET /health``. Responses are pre-encoded once per shape and then written as bytes.

Shape of an answer, chosen per request:

- content chunks ``N`` = the ``-c<N>`` suffix of the model name if present, else
  ``max_tokens`` (or ``max_completion_tokens``), else 10; each chunk carries one
  token ``"tok "``. A non-streaming answer has the same ``N`` tokens in one message;
- delay between content chunks = the ``-d<ms>`` suffix of the model name, else 0.
  E.g. ``bench-upstream-d20`` with ``max_tokens: 100`` gives 100 chunks 20 ms apart.

A stream is: a role chunk, N content chunks, a finish chunk, a usage chunk with
``choices: []`` when ``stream_options.include_usage`` is true, ``data: [DONE]``;
sent with chunked transfer encoding on a keep-alive connection. Without delay the
whole stream goes out in one write; with delay, the role chunk and the first content
chunk go out at once and chunk ``i`` at ``start + i * delay`` (``loop.call_at``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from collections.abc import Callable
from typing import Any, cast

import httptools
import orjson

from bench.upstream_messages import message_frames, message_whole

__all__ = ["Shape", "UpstreamProtocol", "main", "parse_shape", "serve"]

_CREATED = 1_700_000_000
_PROMPT_TOKENS = 12
_TOKEN = "tok "
_SHAPE = re.compile(r"-([cd])(\d+)")


class Shape:
    """What to answer: chunk count, delay, streaming, usage."""

    __slots__ = ("chunks", "delay", "include_usage", "messages", "model", "stream")

    def __init__(
        self, model: str, chunks: int, delay: float, stream: bool, include_usage: bool,
        messages: bool = False,
    ) -> None:
        self.model = model
        self.chunks = chunks
        self.delay = delay
        self.stream = stream
        self.include_usage = include_usage
        self.messages = messages  # Anthropic's /v1/messages

    def key(self) -> tuple[str, int, float, bool, bool, bool]:
        return (self.model, self.chunks, self.delay, self.stream, self.include_usage,
                self.messages)


def parse_shape(body: dict[str, Any]) -> Shape:
    """Read the answer's shape from a request body (see the module docstring)."""
    model = str(body.get("model") or "bench-upstream")
    found = {k: int(v) for k, v in _SHAPE.findall(model)}
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or 10
    chunks = found.get("c", int(limit))
    delay = found.get("d", 0) / 1000.0
    options = body.get("stream_options") or {}
    return Shape(model, chunks, delay, bool(body.get("stream")), bool(options.get("include_usage")))


def _usage(n: int) -> dict[str, int]:
    return {"prompt_tokens": _PROMPT_TOKENS, "completion_tokens": n,
            "total_tokens": _PROMPT_TOKENS + n}


def _completion(shape: Shape) -> bytes:
    body = orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": _CREATED,
        "model": shape.model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": _TOKEN * shape.chunks}}],
        "usage": _usage(shape.chunks),
    })
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def _frame(obj: dict[str, Any] | None) -> bytes:
    """One SSE event as one HTTP chunk."""
    data = b"data: " + (orjson.dumps(obj) if obj is not None else b"[DONE]") + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _stream_frames(shape: Shape) -> tuple[bytes, list[bytes], bytes]:
    """(head + role chunk, content chunks, tail) of a stream, pre-encoded."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": _CREATED,
            "model": shape.model}

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        return _frame({**base, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
    head += chunk({"role": "assistant", "content": ""}, None)
    body = [chunk({"content": _TOKEN}, None)] * shape.chunks
    tail = chunk({}, "stop")
    if shape.include_usage:
        tail += _frame({**base, "choices": [], "usage": _usage(shape.chunks)})
    tail += _frame(None) + b"0\r\n\r\n"
    return head, body, tail


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_HEALTH = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_EMBEDDINGS_BODY = orjson.dumps({
    "object": "list", "model": "bench-embed", "usage": {"prompt_tokens": 8, "total_tokens": 8},
    "data": [{"object": "embedding", "index": 0, "embedding": [0.125] * 256}],
})
_EMBEDDINGS = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(_EMBEDDINGS_BODY)) + _EMBEDDINGS_BODY  # one input's answer, for bench.apis


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection. Requests are answered in order (no pipelining overlap)."""

    cache: dict[tuple[str, int, float, bool, bool, bool], Any] = {}

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.busy = False
        self.queue: list[Callable[[], None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_BAD)
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body = self.url, b"".join(self.body)
        if self.busy:
            self.queue.append(lambda: self._answer(url, body))
        else:
            self._answer(url, body)

    def _answer(self, url: bytes, raw: bytes) -> None:
        t = self.transport
        if t is None:
            return
        if url.startswith(b"/health"):
            t.write(_HEALTH)
            return
        if url.startswith(b"/v1/embeddings"):
            t.write(_EMBEDDINGS)
            return
        messages = url.startswith(b"/v1/messages")
        if not messages and not url.startswith(b"/v1/chat/completions"):
            t.write(_NOT_FOUND)
            return
        try:
            shape = parse_shape(orjson.loads(raw))
            shape.messages = messages
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
            t.write(_BAD)
            t.close()
            return
        key = shape.key()
        encoded = self.cache.get(key)
        if encoded is None:
            if not shape.stream:
                encoded = (message_whole(shape.model, shape.chunks) if messages
                           else _completion(shape))
            else:
                head, body, tail = (message_frames(shape.model, shape.chunks) if messages
                                    else _stream_frames(shape))
                encoded = head + b"".join(body) + tail if not shape.delay else (head, body, tail)
            self.cache[key] = encoded
        if isinstance(encoded, bytes):
            t.write(encoded)
        else:
            head, body, tail = encoded
            self._paced(head, body, tail, shape.delay)

    def _paced(self, head: bytes, body: list[bytes], tail: bytes, delay: float) -> None:
        """Write chunk i at start + i*delay; the role and first content chunk at once."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.busy = True
        n = len(body)

        def step(i: int) -> None:
            t = self.transport
            if t is None or t.is_closing():
                self.busy = False
                return
            if i >= n:
                t.write(tail)
                self._done()
                return
            t.write(body[i])
            loop.call_at(start + (i + 1) * delay, step, i + 1)

        assert self.transport is not None
        self.transport.write(head)
        step(0)

    def _done(self) -> None:
        self.busy = False
        if self.queue:
            self.queue.pop(0)()


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=16384,
                                      reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
