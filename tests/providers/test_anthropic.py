"""The Anthropic adapter against a real local server replaying recorded streams."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.fake_upstream import refused_url, serve, write_sse
from tollway.chunks import Event, Finish, Start, TextDelta, ToolCallDelta, Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import InvalidRequest, UpstreamError
from tollway.providers.anthropic import AnthropicProvider
from tollway.providers.base import ChatRequest
from tollway.wire.anthropic import build_messages_request, translate_messages

RECORDINGS = Path(__file__).resolve().parents[3] / "shared/conformance/streams/anthropic"
KEY = "sk-ant-secret-test-key-123"

FABLE_B = (RECORDINGS / "sdkpy-fable-stream-b-fallback.sse").read_bytes()

# What each recording implies: model, text, reasoning, tool calls, finish, usage.
EXPECTED: dict[str, dict[str, Any]] = {
    "docs-basic.sse": dict(
        model="claude-opus-4-1-20250805", text="Hello!", finish="stop", usage=(25, 15, 0)
    ),
    "docs-extended-thinking.sse": dict(
        model="claude-opus-4-1-20250805",
        reasoning=(
            "Let me solve this step by step:\n\n1. First break down 27 * 453"
            "\n2. 453 = 400 + 50 + 3\n3. 27 * 400 = 10,800\n4. 27 * 50 = 1,350"
            "\n5. 27 * 3 = 81\n6. 10,800 + 1,350 + 81 = 12,231"
        ),
        text="27 * 453 = 12,231",
        finish="stop",
        usage=None,  # the docs example reports none
    ),
    "docs-tool-use.sse": dict(
        model="claude-opus-4-1-20250805",
        text="Okay, let's check the weather for San Francisco, CA:",
        tools=[("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather",
                {"location": "San Francisco, CA", "unit": "fahrenheit"})],
        finish="tool_calls",
        usage=(472, 89, 0),
    ),
    "sdkpy-basic_response.sse": dict(
        model="claude-3-opus-latest", text="Hello there!", finish="stop", usage=(11, 6, 0)
    ),
    "sdkpy-compaction_response.sse": dict(
        model="claude-opus-4-7", text="Hello there!", finish="stop", usage=(30, 8, 0)
    ),
    "sdkpy-fable-stream-a-refusal.sse": dict(
        model="claude-fable-5",
        reasoning=(
            "Simple educational question about what a solar eclipse is. This is benign general "
            "knowledge — definitions are fine. Also the user called me \"claudius\" — I'm Claude. "
            "Minor correction or just roll with it politely."
        ),
        text="Hi",
        finish="content_filter",
        usage=(28, 106, 0),
        reasoning_tokens=67,
    ),
    "sdkpy-fable-stream-b-fallback.sse": dict(
        model="claude-opus-4-8",
        text="".join(
            json.loads(line[6:])["delta"]["text"]
            for line in FABLE_B.decode().splitlines()
            if '"text_delta"' in line
        ),
        finish="stop",
        usage=(31, 547, 0),
    ),
    "sdkpy-fallback_credit_response.sse": dict(
        model="claude-sonnet-4-5", text="Hello there!", finish="stop", usage=(25, 8, 0)
    ),
    "sdkpy-fallback_response.sse": dict(  # the fallback block's "to" model served it
        model="claude-sonnet-4-5", text="Hello there!", finish="stop", usage=(25, 8, 0)
    ),
    "sdkpy-refusal_response.sse": dict(
        model="claude-opus-4-7", text="", finish="content_filter", usage=(20, 0, 0)
    ),
    "sdkpy-tool_use_response.sse": dict(
        model="claude-sonnet-4-20250514",
        text="I'll check the current weather in Paris for you.",
        tools=[("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"})],
        finish="tool_calls",
        usage=(377, 65, 0),
    ),
}
ERRORS = {"docs-error-overloaded.sse": ("overloaded_error", "Overloaded")}


def request(stream: bool = True, **body: Any) -> ChatRequest:
    messages = body.pop("messages", [{"role": "user", "content": "hi"}])
    body = {"model": "claude", "messages": messages, **body}
    return ChatRequest(
        body=body,
        model="claude",
        stream=stream,
        include_usage=True,
        messages=messages,
        tools=body.get("tools"),
        max_output_tokens=body.get("max_tokens"),
    )


DEP = DeploymentConfig(provider="anth", model="claude-test")


async def run(base_url: str | None, req: ChatRequest, dep: DeploymentConfig = DEP) -> list[Event]:
    config = ProviderConfig(type="anthropic", base_url=base_url, api_key=KEY)
    async with aiohttp.ClientSession() as session:
        provider = AnthropicProvider("anth", config, session)
        return [event async for event in provider.stream(req, dep)]


def summarize(events: list[Event]) -> dict[str, Any]:
    text, reasoning = [], []
    tools: dict[int, dict[str, Any]] = {}
    finish, usage, model = None, None, None
    for event in events:
        if isinstance(event, Start):  # a later Start relabels (a fallback block)
            assert model is None or event.model, "a relabelling Start names the model"
            model = event.model
        elif isinstance(event, TextDelta):
            (reasoning if event.channel == "reasoning" else text).append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = tools.setdefault(event.index, {"id": None, "name": None, "args": ""})
            if event.id is not None:
                assert call["id"] is None, "id only on the first fragment"
                call["id"], call["name"] = event.id, event.name
            call["args"] += event.arguments
        elif isinstance(event, Finish):
            finish = event.reason
        elif isinstance(event, Usage):
            usage = event
    assert isinstance(events[0], Start)
    return dict(model=model, text="".join(text), reasoning="".join(reasoning), tools=tools,
                finish=finish, usage=usage)


def test_every_recording_has_an_expectation() -> None:
    assert RECORDINGS.is_dir()
    assert sorted(p.name for p in RECORDINGS.glob("*.sse")) == sorted([*EXPECTED, *ERRORS])


@pytest.mark.parametrize("piece", [0, 7])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay(name: str, piece: int) -> None:
    raw = (RECORDINGS / name).read_bytes()
    seen: dict[str, Any] = {}

    async def handler(req: web.Request) -> web.StreamResponse:
        seen["path"] = req.path
        seen["headers"] = dict(req.headers)
        seen["body"] = await req.json()
        return await write_sse(req, raw, piece)

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await run(url, request())

    events = asyncio.run(main())
    got = summarize(events)
    want = EXPECTED[name]
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == KEY
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["body"]["stream"] is True and seen["body"]["model"] == "claude-test"
    assert got["model"] == want["model"]
    assert got["text"] == want["text"]
    assert got["reasoning"] == want.get("reasoning", "")
    assert got["finish"] == want["finish"]
    calls = [got["tools"][i] for i in sorted(got["tools"])]
    assert sorted(got["tools"]) == list(range(len(calls)))
    assert [(c["id"], c["name"], json.loads(c["args"])) for c in calls] == want.get("tools", [])
    usage = got["usage"]
    if want["usage"] is None:
        assert usage is None and isinstance(events[-1], Finish)
        return
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == want["usage"]
    assert usage.reasoning_tokens == want.get("reasoning_tokens", 0)
    assert isinstance(events[-1], Usage) and isinstance(events[-2], Finish)


def test_error_event_is_retryable() -> None:
    raw = (RECORDINGS / "docs-error-overloaded.sse").read_bytes()

    async def main() -> None:
        async with serve(lambda r: write_sse(r, raw)) as url:
            await run(url, request())

    with pytest.raises(UpstreamError) as info:
        asyncio.run(main())
    assert info.value.retryable and info.value.code == "overloaded_error"
    assert info.value.message == "Overloaded"


def test_stream_cut_short_is_an_error() -> None:
    raw = (RECORDINGS / "docs-basic.sse").read_bytes()
    raw = raw[: raw.index(b"event: message_delta")]

    async def main() -> list[Event]:
        got: list[Event] = []
        async with serve(lambda r: write_sse(r, raw)) as url:
            with pytest.raises(UpstreamError) as info:
                async for ev in _stream(url, request()):
                    got.append(ev)
        assert info.value.retryable
        return got

    got = asyncio.run(main())
    assert summarize(got)["text"] == "Hello!"


async def _stream(url: str, req: ChatRequest) -> Any:
    config = ProviderConfig(type="anthropic", base_url=url, api_key=KEY)
    async with aiohttp.ClientSession() as session:
        async for event in AnthropicProvider("anth", config, session).stream(req, DEP):
            yield event


def test_non_streaming() -> None:
    message = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "a"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 5, "output_tokens": 20},
    }
    seen: dict[str, Any] = {}

    async def handler(req: web.Request) -> web.Response:
        seen["body"] = await req.json()
        return web.json_response(message)

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await run(url + "/v1", request(stream=False))

    got = summarize(asyncio.run(main()))
    assert "stream" not in seen["body"]
    assert got["reasoning"] == "hmm" and got["text"] == "Let me look."
    assert [(c["id"], c["name"], json.loads(c["args"])) for c in got["tools"].values()] == [
        ("toolu_1", "lookup", {"q": "a"}), ("toolu_2", "now", {})]
    assert got["finish"] == "tool_calls"
    u = got["usage"]
    assert (u.prompt_tokens, u.cached_tokens, u.completion_tokens) == (115, 100, 20)


def test_tool_without_arguments_gets_empty_object() -> None:
    lines = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "t0", "name": "a", "input": {}}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "t1", "name": "b", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": "{\"x\": 1}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    raw = b"".join(
        b"event: %s\ndata: %s\n\n" % (o["type"].encode(), orjson.dumps(o)) for o in lines
    )

    async def main() -> list[Event]:
        async with serve(lambda r: write_sse(r, raw)) as url:
            return await run(url, request())

    got = summarize(asyncio.run(main()))
    assert [(c["id"], json.loads(c["args"])) for c in got["tools"].values()] == [
        ("t0", {}), ("t1", {"x": 1})]


def _error_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    async def handler(req: web.Request) -> web.Response:
        return web.json_response(body, status=status, headers=headers)
    return handler


def _http_error(status: int, body: Any, headers: dict[str, str] | None = None) -> UpstreamError:
    async def main() -> None:
        async with serve(_error_response(status, body, headers)) as url:
            await run(url, request())

    with pytest.raises(UpstreamError) as info:
        asyncio.run(main())
    return info.value


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retryable(status: int) -> None:
    err = _http_error(status, anthropic_error("invalid_request_error", "messages: bad"))
    assert not err.retryable and err.status == status and err.message == "messages: bad"


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_misconfiguration_and_hide_the_key(status: int) -> None:
    body = anthropic_error("authentication_error", f"invalid x-api-key {KEY}")
    err = _http_error(status, body)
    assert err.retryable and err.misconfigured
    assert KEY not in err.message and KEY not in str(err.to_body())


def test_rate_limit_honours_retry_after() -> None:
    err = _http_error(429, anthropic_error("rate_limit_error", "slow down"), {"Retry-After": "7"})
    assert err.retryable and err.status == 429 and err.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_server_errors_are_retryable(status: int) -> None:
    err = _http_error(status, anthropic_error("overloaded_error", "Overloaded"))
    assert err.retryable and not err.misconfigured and err.status in (502, 503)


def test_connection_refused_is_retryable() -> None:
    with pytest.raises(UpstreamError) as info:
        asyncio.run(run(refused_url(), request()))
    assert info.value.retryable and KEY not in info.value.message


# --- request translation -------------------------------------------------------------


def build(**body: Any) -> dict[str, Any]:
    req = request(**body)
    return build_messages_request(
        req.body, req.messages, req.tools, "claude-test", req.max_output_tokens, None, req.stream
    )


def test_system_and_developer_messages_become_system() -> None:
    out = build(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "again"},
    ])
    assert out["system"] == [{"type": "text", "text": "Be brief."},
                             {"type": "text", "text": "Use French."}]
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}]
    assert out["max_tokens"] == 4096 and out["stream"] is True


def test_images_data_and_http() -> None:
    out = build(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_tools_tool_calls_and_results() -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}]
    out = build(
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        stop="END",
        messages=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2",
             "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert out["tools"] == [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    assert out["tool_choice"] == {"type": "tool", "name": "get_weather",
                                  "disable_parallel_tool_use": True}
    assert out["stop_sequences"] == ["END"]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1",
         "content": [{"type": "text", "text": "sunny"}]},
        {"type": "tool_result", "tool_use_id": "call_2",
         "content": [{"type": "text", "text": "rain"}]},
        {"type": "text", "text": "thanks"},
    ]


@pytest.mark.parametrize(("choice", "want"), [
    ("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"})])
def test_tool_choice_strings(choice: str, want: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    out = build(tools=tools, tool_choice=choice)
    assert out["tool_choice"] == want
    assert out["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


def test_thinking_budget_from_reasoning_effort() -> None:
    out = build(reasoning_effort="medium", temperature=0.2)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] == 4096 + 8192 and "temperature" not in out
    out = build(reasoning_effort="high", max_tokens=10000)
    assert out["thinking"]["budget_tokens"] == 9999 and out["max_tokens"] == 10000
    out = build(reasoning_effort="low", max_tokens=500, temperature=1.5, top_p=0.9)
    assert "thinking" not in out and out["temperature"] == 1.0 and out["top_p"] == 0.9
    assert "thinking" not in build(reasoning_effort="none")


def test_max_tokens_from_deployment() -> None:
    req = request()
    out = build_messages_request(req.body, req.messages, None, "m", None, 777, True)
    assert out["max_tokens"] == 777


def test_bad_tool_arguments_are_a_client_error() -> None:
    with pytest.raises(InvalidRequest):
        translate_messages([{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}])
