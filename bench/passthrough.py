"""The thinnest honest Python OpenAI-compatible passthrough: the benchmark's baseline.

``python -m bench.passthrough --port P --upstream http://127.0.0.1:U`` serves
``POST /v1/chat/completions`` and ``GET /health`` with uvicorn (httptools, uvloop)
and a raw ASGI app; requests go upstream through one shared aiohttp
``ClientSession`` (keep-alive, no connection limit). It does what any gateway must
do and nothing else:

- parses the request JSON (``orjson``) and forwards it re-serialised, with the
  client's ``Authorization`` header;
- non-streaming: parses the upstream's JSON body and re-serialises it;
- streaming: splits the upstream's SSE into events, parses every ``data:`` JSON
  chunk and writes it out re-serialised as ``data: <json>\\n\\n`` (``data: [DONE]``
  as is); the events that arrived in one upstream read go out in one ASGI send;
- an upstream error status is passed on with its body; an unreachable upstream is
  a 502.

No authentication, routing, metering, limits, firewall or traces: tollway's
figures are compared with this process's CPU and RSS (``bench/cli.py``).
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import orjson

__all__ = ["PassthroughApp", "main", "reserialise_events"]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_DONE = b"[DONE]"


def reserialise_events(buf: bytes) -> tuple[bytes, bytes]:
    """Re-serialise the complete SSE events in ``buf``: (output bytes, unconsumed rest).

    Each ``data:`` event's JSON is parsed and dumped again; ``[DONE]`` passes as is;
    events without a ``data:`` line (comments) are dropped.
    """
    out: list[bytes] = []
    start = 0
    while (end := buf.find(b"\n\n", start)) >= 0:
        event = buf[start:end]
        start = end + 2
        if event.startswith(b"data:"):
            payload = event[5:].strip()
        else:
            lines = [ln[5:].strip() for ln in event.replace(b"\r", b"").split(b"\n")
                     if ln.startswith(b"data:")]
            if not lines:
                continue
            payload = b"\n".join(lines)
        if payload == _DONE:
            out.append(b"data: [DONE]\n\n")
        else:
            out.append(b"data: " + orjson.dumps(orjson.loads(payload)) + b"\n\n")
    return b"".join(out), buf[start:]


class PassthroughApp:
    """A raw ASGI app forwarding chat completions to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/v1/chat/completions"
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            path, method = scope["path"], scope["method"]
            if path == "/v1/chat/completions" and method == "POST":
                await self._chat(scope, receive, send)
            elif path == "/health":
                await _answer(send, 200, b'{"status":"ok"}')
            else:
                await _answer(send, 404, b'{"error":{"message":"not found"}}')

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _chat(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            body = orjson.loads(b"".join(parts))
        except orjson.JSONDecodeError:
            await _answer(send, 400, b'{"error":{"message":"invalid JSON"}}')
            return
        headers = {"content-type": "application/json"}
        for name, value in scope["headers"]:
            if name == b"authorization":
                headers["authorization"] = value.decode("latin-1")
        assert self.session is not None
        try:
            async with self.session.post(self.url, data=orjson.dumps(body),
                                         headers=headers) as resp:
                if resp.status != 200:
                    await _answer(send, resp.status, await resp.read())
                elif body.get("stream"):
                    await self._relay_stream(resp, send)
                else:
                    whole = orjson.dumps(orjson.loads(await resp.read()))
                    await _answer(send, 200, whole)
        except aiohttp.ClientError as exc:
            await _answer(send, 502, orjson.dumps({"error": {"message": str(exc)}}))

    @staticmethod
    async def _relay_stream(resp: aiohttp.ClientResponse, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        rest = b""
        async for data in resp.content.iter_any():
            out, rest = reserialise_events(rest + data if rest else data)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        if rest.strip():
            out, _ = reserialise_events(rest.strip() + b"\n\n")
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.passthrough", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:18081")
    args = p.parse_args(argv)
    import uvicorn

    uvicorn.run(PassthroughApp(args.upstream), host=args.host, port=args.port, loop="uvloop",
                http="httptools", lifespan="on", access_log=False, log_level="warning",
                backlog=8192, timeout_keep_alive=30, server_header=False, date_header=False)


if __name__ == "__main__":
    main()
