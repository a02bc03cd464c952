"""Azure OpenAI through tollway: deployment URLs, api-version, api-key or Entra ID tokens,
the empty first chunk and content-filter results, content-filter errors.

No Azure recording is among the conformance data; the stream below has the shape Azure
sends (its first chunk has ``id``/``model``/``object`` empty, ``created`` 0, ``choices``
empty and ``prompt_filter_results``; every choice carries ``content_filter_results``), as
documented by Microsoft and seen in public recordings of Azure answers (llama-stack's
integration recordings of an Azure ``gpt-5-mini`` deployment).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.support.schemas import validate
from tests.support.servers import Upstream, run_tollway, send_sse
from tollway.config import ConfigError, parse_settings

FILTERS = {"hate": {"filtered": False, "severity": "safe"},
           "self_harm": {"filtered": False, "severity": "safe"},
           "sexual": {"filtered": False, "severity": "safe"},
           "violence": {"filtered": False, "severity": "safe"}}
MODEL = "gpt-4o-2024-11-20"


def chunk(delta: dict[str, Any] | None, finish: str | None = None,
          filters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"choices": [{"content_filter_results": filters if filters is not None else FILTERS,
                         "delta": delta or {}, "finish_reason": finish, "index": 0,
                         "logprobs": None}],
            "created": 1732600000, "id": "chatcmpl-AZ1", "model": MODEL,
            "object": "chat.completion.chunk", "system_fingerprint": "fp_azure"}


FIRST = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
         "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}]}


def azure_stream(parts: list[str], finish: str = "stop") -> bytes:
    objs = [FIRST, chunk({"content": "", "role": "assistant"}, filters={}),
            *(chunk({"content": p}) for p in parts), chunk({}, finish, filters={}),
            {"choices": [], "created": 1732600000, "id": "chatcmpl-AZ1", "model": MODEL,
             "object": "chat.completion.chunk",
             "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}]
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs) + \
        b"data: [DONE]\n\n"


def azure_whole(text: str) -> dict[str, Any]:
    return {"choices": [{"content_filter_results": FILTERS, "finish_reason": "stop", "index": 0,
                         "logprobs": None, "message": {"content": text, "role": "assistant"}}],
            "created": 1732600000, "id": "chatcmpl-AZ2", "model": MODEL,
            "object": "chat.completion", "prompt_filter_results": [
                {"prompt_index": 0, "content_filter_results": FILTERS}],
            "system_fingerprint": "fp_azure",
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}


async def answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = upstream.requests[-1]
    if body.get("stream"):
        return await send_sse(request, azure_stream(["Hello", " from", " Azure"]), upstream)
    return web.json_response(azure_whole("Hello from Azure"))


def config(url: str, **provider: Any) -> dict[str, Any]:
    base = url.removesuffix("/v1")
    return {"providers": {"az": {"type": "azure", "base_url": base, **provider}},
            "models": {"gpt": {"deployments": [{"provider": "az", "model": "my-gpt4o"}]}}}


def test_deployment_url_api_key_served_model_and_filter_results() -> None:
    with Upstream(answer) as upstream, run_tollway(config(
            upstream.base_url, api_key="azure-key-1",
            options={"api_version": "2025-01-01-preview"})) as url:
        with httpx.stream("POST", url + "/v1/chat/completions", json={
            "model": "gpt", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}) as r:
            events = [json.loads(e[6:]) for e in r.read().split(b"\n\n")
                      if e.startswith(b"data: {")]
        whole = httpx.post(url + "/v1/chat/completions", json={
            "model": "gpt", "messages": [{"role": "user", "content": "hi"}]}).json()
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        text = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
            model="gpt", stream=True, messages=[{"role": "user", "content": "hi"}]) if c.choices)
        path_query = [h for h in upstream.headers]
    assert upstream.requests[0]["stream"] is True
    headers = path_query[0]
    assert headers["api-key"] == "azure-key-1" and "Authorization" not in headers
    for e in events:
        validate(e, "CreateChatCompletionStreamResponse")
    assert all(e["model"] == MODEL for e in events)  # the served model, not "" nor the alias
    assert "".join(c["delta"].get("content") or "" for e in events for c in e["choices"]) \
        == "Hello from Azure" == text
    assert any(e.get("prompt_filter_results") for e in events)
    assert any(c.get("content_filter_results") == FILTERS for e in events for c in e["choices"])
    validate(whole, "CreateChatCompletionResponse")
    assert whole["model"] == MODEL and whole["choices"][0]["message"]["content"] == \
        "Hello from Azure"
    assert whole["choices"][0]["content_filter_results"] == FILTERS


def test_request_path_and_api_version() -> None:
    seen: list[str] = []

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        seen.append(str(request.rel_url))
        return await answer(request, upstream)

    with Upstream(handler) as upstream, run_tollway(config(upstream.base_url,
                                                           api_key="k")) as url:
        openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert seen == ["/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"]


def test_content_filter_error_is_returned_not_retried() -> None:
    error = {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                   "content management policy.", "type": None, "param": "prompt",
        "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": {"filtered": True, "severity": "high"}}}}}
    calls: list[str] = []

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        calls.append(request.path)
        if "first" in request.path:
            return web.json_response(error, status=400)
        return await answer(request, upstream)

    with Upstream(handler) as upstream:
        cfg = config(upstream.base_url, api_key="k")
        cfg["models"]["gpt"]["deployments"] = [{"provider": "az", "model": "first"},
                                               {"provider": "az", "model": "second"}]
        with run_tollway(cfg) as url:
            for stream in (True, False):
                r = httpx.post(url + "/v1/chat/completions", json={
                    "model": "gpt", "stream": stream,
                    "messages": [{"role": "user", "content": "bad"}]})
                assert r.status_code == 400
                assert r.json()["error"]["code"] == "content_filter"
                assert r.json()["error"]["param"] == "prompt"
    assert all("first" in p for p in calls)  # never fell back to "second"


def test_filtered_answer_ends_with_content_filter() -> None:
    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        return await send_sse(request, azure_stream(["Part"], finish="content_filter"), upstream)

    with Upstream(handler) as upstream, run_tollway(config(upstream.base_url,
                                                           api_key="k")) as url:
        chunks = list(openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
                      .chat.completions.create(model="gpt", stream=True,
                                               messages=[{"role": "user", "content": "x"}]))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"


def test_entra_id_client_credentials() -> None:
    tokens: list[dict[str, Any]] = []

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        if request.path.endswith("/oauth2/v2.0/token"):
            form = await request.post()
            tokens.append({"path": request.path, **form})
            return web.json_response({"token_type": "Bearer", "expires_in": 3599,
                                      "access_token": f"entra-{len(tokens)}"})
        assert request.headers["Authorization"] == "Bearer entra-1"
        assert "api-key" not in request.headers
        return await answer(request, upstream)

    with Upstream(handler) as upstream:
        base = upstream.base_url.removesuffix("/v1")
        with run_tollway(config(upstream.base_url, options={
                "tenant_id": "contoso-tenant", "client_id": "app-1", "client_secret": "s3cret",
                "authority": base})) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
            for _ in range(3):
                client.chat.completions.create(model="gpt",
                                               messages=[{"role": "user", "content": "hi"}])
    assert len(tokens) == 1  # fetched once, reused until it nears expiry
    assert tokens[0] == {"path": "/contoso-tenant/oauth2/v2.0/token",
                         "grant_type": "client_credentials", "client_id": "app-1",
                         "client_secret": "s3cret",
                         "scope": "https://cognitiveservices.azure.com/.default"}


def test_rejected_entra_credentials_fail_over_as_misconfiguration() -> None:
    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        if request.path.endswith("/token"):
            return web.json_response({"error": "invalid_client"}, status=401)
        raise AssertionError("no call without a token")

    with Upstream(handler) as upstream:
        base = upstream.base_url.removesuffix("/v1")
        with run_tollway(config(upstream.base_url, options={
                "tenant_id": "t", "client_id": "c", "client_secret": "nope",
                "authority": base})) as url:
            r = httpx.post(url + "/v1/chat/completions", json={
                "model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 502 and "nope" not in r.text
    assert "configuration error" in r.json()["error"]["message"]


@pytest.mark.parametrize(("provider", "message"), [
    ({"api_key": "k"}, "needs base_url"),
    ({"base_url": "https://r.openai.azure.com"}, "needs one credential"),
    ({"base_url": "https://r.openai.azure.com", "api_key": "k",
      "options": {"entra_token": "t"}}, "needs one credential"),
    ({"base_url": "https://r.openai.azure.com", "options": {"client_id": "c"}},
     "tenant_id, client_id and client_secret"),
])
def test_config_errors(provider: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"providers": {"az": {"type": "azure", **provider}}})
    assert "providers.az" in str(info.value) and message in str(info.value)


def test_static_entra_token() -> None:
    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer ey-static"
        return await answer(request, upstream)

    with Upstream(handler) as upstream, run_tollway(config(
            upstream.base_url, options={"entra_token": "ey-static"})) as url:
        out = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) \
            .chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "Hello from Azure"
