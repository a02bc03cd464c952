"""A client that goes away mid-stream makes tollway close the upstream promptly."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from aiohttp import web

from tests.support.servers import Upstream, run_tollway
from tollway.api.protocol import TollwayHttpProtocol


def _chunk(text: str) -> bytes:
    return b"data: " + json.dumps({
        "id": "x", "object": "chat.completion.chunk", "created": 1, "model": "up",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }).encode() + b"\n\n"


async def _slow(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    stall = "stall" in (await request.json())["model"]
    for i in range(1000):
        await resp.write(_chunk(f"w{i} "))
        await asyncio.sleep(3600 if stall and i == 2 else 0.02)
    return resp


@pytest.mark.parametrize("http", ["tollway", "httptools"])
@pytest.mark.parametrize("model", ["flowing", "stall"])
def test_disconnect_closes_upstream(model: str, http: str) -> None:
    """Under tollway's protocol the request's watch is called when the connection closes;
    under another server (uvicorn's own protocol) a watcher task waits in ``receive()``."""
    with Upstream(_slow) as upstream:
        config = {"providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
                  "models": {m: {"deployments": [{"provider": "up", "model": m}]}
                             for m in ("flowing", "stall")}}
        with run_tollway(config, TollwayHttpProtocol if http == "tollway" else http) as url:
            with httpx.stream("POST", url + "/v1/chat/completions", json={
                "model": model, "stream": True, "messages": [{"role": "user", "content": "x"}],
            }) as r:
                seen = 0
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        seen += 1
                    if seen == 3:
                        break
            assert upstream.closed_early.wait(5), "upstream connection still open"


async def _dies(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(3):
        await resp.write(_chunk(f"w{i} "))
    request.transport.close()  # type: ignore[union-attr]
    return resp


def test_upstream_death_mid_stream_becomes_one_error_event() -> None:
    with Upstream(_dies) as upstream:
        config = {"providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
                  "models": {"m": {"deployments": [{"provider": "up", "model": "m"}]}}}
        with run_tollway(config) as url:
            r = httpx.post(url + "/v1/chat/completions", json={
                "model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    events = [e for e in r.content.split(b"\n\n") if e]
    assert len(events) == 4
    error = json.loads(events[-1][6:])["error"]
    assert "connection broke" in error["message"]
    assert b"[DONE]" not in r.content
