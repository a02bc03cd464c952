"""End to end: the openai SDK → tollway → the Anthropic adapter → a local replay server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web
from openai import OpenAI

from tests.fake_upstream import refused_url
from tests.providers.test_anthropic import EXPECTED
from tests.support.schemas import CONFORMANCE
from tests.support.servers import Upstream, run_tollway, send_sse

RECORDINGS = CONFORMANCE / "streams" / "anthropic"
KEY = "sk-ant-e2e-secret-999"
HEAD = (RECORDINGS / "sdkpy-basic_response.sse").read_bytes().split(b"event: content_block_stop")[0]


async def replay(request: web.Request, up: Upstream) -> web.StreamResponse:
    """The deployment's model name picks the answer: a recording or a failure."""
    model = up.requests[-1].get("model", "")
    if model.endswith(".sse"):
        raw = (RECORDINGS / model).read_bytes()
        if up.requests[-1].get("stream"):
            return await send_sse(request, raw, up)
        return web.json_response(_as_message(raw))
    if model == "http-500":
        return web.json_response(
            {"type": "error", "error": {"type": "api_error", "message": "Internal"}}, status=500)
    if model == "http-401":
        return web.json_response({"type": "error", "error": {
            "type": "authentication_error", "message": f"bad key {KEY}"}}, status=401)
    if model == "drop-after-first":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(HEAD)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return resp
    return web.json_response({"error": {"message": "unknown"}}, status=404)


def _as_message(raw: bytes) -> dict[str, Any]:
    """Fold a recorded stream into the Messages JSON a non-streaming call returns."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for line in raw.decode().splitlines():
        if not line.startswith("data: "):
            continue
        obj = json.loads(line[6:])
        kind = obj["type"]
        if kind == "message_start":
            message = obj["message"]
        elif kind == "content_block_start":
            blocks[obj["index"]] = dict(obj["content_block"])
        elif kind == "content_block_delta":
            block, delta = blocks[obj["index"]], obj["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                block["_json"] = block.get("_json", "") + delta["partial_json"]
        elif kind == "message_delta":
            message.update(obj["delta"])
            message["usage"] = {**message.get("usage", {}), **obj.get("usage", {})}
    for block in blocks.values():
        if "_json" in block:
            block["input"] = json.loads(block.pop("_json") or "{}")
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _dep(provider: str, model: str, name: str) -> dict[str, Any]:
    return {"provider": provider, "model": model, "name": name,
            "timeouts": {"connect": 2, "first_token": 2, "idle": 2, "total": 10}}


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, Upstream]]:
    with Upstream(replay) as up:
        models: dict[str, Any] = {
            f"rec-{name[:-4]}": {"deployments": [_dep("anth", name, name[:-4])]}
            for name in EXPECTED
        }
        for mode in ("json", "stream"):
            models[f"fb-{mode}"] = {"deployments": [
                _dep("anth", "http-500", f"bad-500-{mode}"),
                _dep("dead", "claude", f"refused-{mode}"),
                _dep("anth", "http-401", f"bad-key-{mode}"),
                _dep("anth", "sdkpy-basic_response.sse", f"good-{mode}"),
            ]}
        models["mid"] = {"deployments": [
            _dep("anth", "drop-after-first", "drop-mid"),
            _dep("anth", "sdkpy-basic_response.sse", "good-mid"),
        ]}
        models["overloaded"] = {"deployments": [
            _dep("anth", "docs-error-overloaded.sse", "overloaded")]}
        config = {
            "providers": {
                "anth": {"type": "anthropic", "base_url": up.base_url, "api_key": KEY},
                "dead": {"type": "anthropic", "base_url": refused_url(), "api_key": KEY},
            },
            "models": models,
        }
        with run_tollway(config) as url:
            yield url, up


@pytest.fixture()
def client(gateway: tuple[str, Upstream]) -> OpenAI:
    return OpenAI(base_url=gateway[0] + "/v1", api_key="unused", max_retries=0)


MESSAGES: Any = [{"role": "user", "content": "Hello"}]


def _check_usage(usage: Any, want: dict[str, Any]) -> None:
    if want["usage"] is None:
        assert usage.model_extra.get("estimated") is True  # tollway counted it
        return
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    assert (usage.prompt_tokens, usage.completion_tokens, cached) == want["usage"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recording_streams_through_tollway(client: OpenAI, name: str) -> None:
    want = EXPECTED[name]
    chunks = list(client.chat.completions.create(
        model=f"rec-{name[:-4]}", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True},
    ))
    text, reasoning, finish = "", "", None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        assert chunk.model == want["model"]
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for tc in delta.tool_calls or ():
                call = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                if tc.id:
                    call["id"] = tc.id
                if tc.function and tc.function.name:
                    call["name"] = tc.function.name
                call["args"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    assert text == want["text"]
    assert reasoning == want.get("reasoning", "")
    assert finish == want["finish"]
    got_calls = [(c["id"], c["name"], json.loads(c["args"])) for _, c in sorted(calls.items())]
    assert got_calls == want.get("tools", [])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    _check_usage(chunks[-1].usage, want)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recording_non_streaming(client: OpenAI, name: str) -> None:
    want = EXPECTED[name]
    raw = client.chat.completions.with_raw_response.create(
        model=f"rec-{name[:-4]}", messages=MESSAGES)
    completion = raw.parse()
    message = completion.choices[0].message
    assert (message.content or "") == want["text"]
    assert ((message.model_extra or {}).get("reasoning_content") or "") == want.get("reasoning", "")
    got_calls = [(c.id, c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
                 for c in message.tool_calls or ()]
    assert got_calls == want.get("tools", [])
    assert completion.choices[0].finish_reason == want["finish"]
    assert completion.model == want["model"]
    assert raw.headers["x-tollway-served-by"] == name[:-4]
    assert "x-tollway-fallback-from" not in raw.headers
    _check_usage(completion.usage, want)


def test_non_streaming_fallback_headers_and_route_trace(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fb-json", messages=MESSAGES, extra_body={"include_route_trace": True})
    body = json.loads(raw.content)
    assert body["choices"][0]["message"]["content"] == "Hello there!"
    assert raw.headers["x-tollway-served-by"] == "good-json"
    assert raw.headers["x-tollway-fallback-from"] == "fb-json/bad-500-json"
    trace = body["route_trace"]
    assert [(t["deployment"], t["outcome"]) for t in trace] == [
        ("bad-500-json", "error"), ("refused-json", "error"), ("bad-key-json", "error"),
        ("good-json", "ok")]
    assert trace[0]["status"] == 502 and trace[0]["error"] == "Internal"
    assert "configuration error" in trace[2]["error"]
    assert KEY not in raw.content.decode()


def test_streaming_fallback_is_one_clean_stream(
    client: OpenAI, gateway: tuple[str, Upstream]
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="fb-stream", messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["x-tollway-served-by"] == "good-stream"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
    assert [c.choices[0].delta.role for c in chunks if c.choices][0] == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_failure_after_first_byte_is_an_error_event_not_a_retry(
    client: OpenAI, gateway: tuple[str, Upstream]
) -> None:
    up = gateway[1]
    before = len(up.requests)
    stream = client.chat.completions.create(model="mid", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "Hello there!"
    assert [r["model"] for r in up.requests[before:]] == ["drop-after-first"]  # no retry


def test_overloaded_error_event_before_content_is_an_http_error(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="overloaded", messages=MESSAGES, stream=True)
    assert info.value.status_code == 503
