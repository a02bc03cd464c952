"""Every tenant's upstream calls share one connection pool: a cookie an upstream sets
on one answer must never ride on a later request (another tenant's, or anyone's)."""

from __future__ import annotations

import httpx
from aiohttp import web

from tests.support.servers import Upstream, run_tollway


async def _sets_a_cookie(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    resp = web.json_response(body)
    resp.set_cookie("session", f"for-request-{len(upstream.requests)}", path="/")
    return resp


def test_an_upstream_s_cookie_is_never_sent_back() -> None:
    with Upstream(_sets_a_cookie) as upstream:
        # by name: a cookie jar keeps no cookie of an IP address, but does of a host name
        base_url = upstream.base_url.replace("127.0.0.1", "localhost")
        config = {"providers": {"up": {"type": "openai", "base_url": base_url}},
                  "models": {"m": {"deployments": [{"provider": "up", "model": "m"}]}}}
        with run_tollway(config) as url:
            for _ in range(3):
                r = httpx.post(url + "/v1/chat/completions", json={
                    "model": "m", "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 200
                assert "set-cookie" not in r.headers  # nor passed to the client
    assert len(upstream.headers) == 3
    assert all("Cookie" not in h and "cookie" not in h for h in upstream.headers)
