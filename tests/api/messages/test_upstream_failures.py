"""A misbehaving Anthropic upstream behind /v1/messages: Anthropic errors, never a 5xx page
or a stack trace; before the first content a clean HTTP error, after it one ``error`` event."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from tests.api.messages.support import sse_events
from tests.support.servers import Upstream, run_tollway

START = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":'
         b'"message","role":"assistant","model":"x","content":[],"usage":{"input_tokens":3,'
         b'"output_tokens":1}}}\n\n')
TEXT = (b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\nevent: content_block_delta\ndata: '
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n')
STREAMS = {
    "not-an-object": START + b"data: [1, 2]\n\n",
    "invalid-json": START + b"data: {nope\n\n",
    "ends-early": START + TEXT,
    "error-after-text": START + TEXT + b'event: error\ndata: {"type":"error","error":{"type":'
                                       b'"overloaded_error","message":"Overloaded"}}\n\n',
    "http-500": b"",
}


async def _broken(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    model = upstream.requests[-1]["model"]
    if model == "http-500":
        return web.json_response({"type": "error", "error": {"type": "api_error",
                                                             "message": "boom"}}, status=500)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(STREAMS[model])
    await resp.write_eof()
    return resp


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with Upstream(_broken) as up, run_tollway({
        "providers": {"anth": {"type": "anthropic", "base_url": up.base_url, "api_key": "k"}},
        "models": {m: {"deployments": [{"provider": "anth", "model": m}]} for m in STREAMS},
    }) as url:
        yield url


@pytest.mark.parametrize("model", sorted(STREAMS))
def test_a_broken_upstream_is_an_anthropic_error(gateway: str, model: str) -> None:
    body = {"model": model, "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}
    got = httpx.post(gateway + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert "Traceback" not in got.text
    if got.status_code != 200:  # before the first content: a clean HTTP error
        assert got.status_code in (502, 529), got.text
        assert got.json()["type"] == "error" and got.json()["error"]["message"]
        return
    events = sse_events(got.content)
    assert events[-1][0] == "error", events  # after it: one error event ends the stream
    error = json.loads(events[-1][1])
    assert error["type"] == "error" and error["error"]["type"] in ("api_error",
                                                                   "overloaded_error")
    assert [n for n, _ in events].count("error") == 1
    whole = httpx.post(gateway + "/v1/messages", json={**body, "stream": False},
                       headers={"x-api-key": "k"})
    assert whole.status_code >= 500 and whole.json()["type"] == "error"
