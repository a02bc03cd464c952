"""Every tenant's upstream calls share connection pools: a cookie an upstream sets on one
answer must never ride on a later request (another tenant's, or anyone's), whichever API
made the call (chat completions, Responses pass-through, embeddings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.servers import Upstream, run_tollway

CONF = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
EMBEDDING = json.loads(
    (CONF / "embeddings" / "pydantic-ai-te3small-base64-two-inputs.response.json").read_text()
)
RESPONSES_STREAM = sorted((CONF / "streams" / "responses").glob("*.sse"))[0].read_bytes()
CHAT = {"id": "x", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


async def _sets_a_cookie(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    cookie = f"for-request-{len(upstream.requests)}"
    if request.path.endswith("/responses"):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.set_cookie("session", cookie, path="/")
        return await _sse(request, resp)
    body = EMBEDDING if request.path.endswith("/embeddings") else CHAT
    answer = web.json_response(body)
    answer.set_cookie("session", cookie, path="/")
    return answer


async def _sse(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    await resp.prepare(request)
    await resp.write(RESPONSES_STREAM)
    await resp.write_eof()
    return resp


CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions",
             {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    "responses": ("/v1/responses", {"model": "m", "input": "hi", "stream": True}),
    "embeddings": ("/v1/embeddings", {"model": "m", "input": ["hello", "world"],
                                      "encoding_format": "base64"}),
}


@pytest.mark.parametrize("api", sorted(CALLS))
def test_an_upstream_s_cookie_is_never_sent_back(api: str) -> None:
    with Upstream(_sets_a_cookie) as upstream:
        # by name: a cookie jar keeps no cookie of an IP address, but does of a host name
        base_url = upstream.base_url.replace("127.0.0.1", "localhost")
        config = {"providers": {"up": {"type": "openai", "base_url": base_url}},
                  "models": {"m": {"deployments": [{
                      "provider": "up", "model": "m",
                      "apis": ["chat", "responses", "embeddings"]}]}}}  # fmt: skip
        path, body = CALLS[api]
        with run_tollway(config) as url:
            for _ in range(3):
                r = httpx.post(url + path, json=body)
                assert r.status_code == 200, r.text
                assert "set-cookie" not in r.headers  # nor passed to the client
    assert len(upstream.headers) == 3
    assert all("Cookie" not in h and "cookie" not in h for h in upstream.headers)
