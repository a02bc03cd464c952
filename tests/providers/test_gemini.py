"""The Gemini adapter against a real local server replaying Google's recorded answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_upstream import serve, write_sse
from tests.providers.recordings import (
    CONFORMANCE,
    gemini_chunks,
    gemini_expected,
    summarize,
)
from tollway.chunks import Event, ToolCallDelta, Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import InvalidRequest, UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.gemini.provider import GeminiProvider
from tollway.providers.gemini.request import build_generate_request, split_tool_call_id

ALL_STREAMS = sorted((CONFORMANCE / "streams" / "gemini").glob("*.sse"))
BLOCKED = CONFORMANCE / "streams/gemini/firebase-googleai-prompt-blocked-safety.sse"
STREAMS = [p for p in ALL_STREAMS if p != BLOCKED]
WHOLE = CONFORMANCE / "gemini-json"
KEY = "AIza-test-key-123456"
DEP = DeploymentConfig(provider="gem", model="gemini-2.5-flash")


def request(stream: bool = True, **body: Any) -> ChatRequest:
    messages = body.pop("messages", [{"role": "user", "content": "hi"}])
    body = {"model": "g", "messages": messages, **body}
    return ChatRequest(body=body, model="g", stream=stream, include_usage=True,
                       messages=messages, tools=body.get("tools"),
                       max_output_tokens=body.get("max_tokens"))


async def collect(url: str, req: ChatRequest, dep: DeploymentConfig = DEP) -> list[Event]:
    config = ProviderConfig(type="gemini", base_url=url, api_key=KEY)
    async with aiohttp.ClientSession() as session:
        return [e async for e in GeminiProvider("gem", config, session).stream(req, dep)]


def replay(raw: bytes, req: ChatRequest, piece: int = 0,
           status: int = 200) -> tuple[list[Event], dict[str, Any]]:
    seen: dict[str, Any] = {}

    async def handler(r: web.Request) -> web.StreamResponse:
        seen["path"], seen["query"] = r.path, dict(r.query)
        seen["headers"], seen["body"] = dict(r.headers), await r.json()
        if status != 200:
            return web.Response(status=status, body=raw, content_type="text/event-stream")
        return await write_sse(r, raw, piece)

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await collect(url, req)

    return asyncio.run(main()), seen


@pytest.mark.parametrize("piece", [0, 5])
@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_replayed_stream(path: Path, piece: int) -> None:
    raw = path.read_bytes()
    assert raw.endswith(b"\r\n\r\n")  # Google's CRLF framing, as recorded
    events, seen = replay(raw, request(), piece)
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert seen["query"] == {"alt": "sse"}
    assert seen["headers"]["x-goog-api-key"] == KEY
    assert summarize(events) == gemini_expected(gemini_chunks(raw), DEP.model)
    if any(isinstance(e, Usage) for e in events):
        assert isinstance(events[-1], Usage)


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12),
       index=st.integers(min_value=0, max_value=len(STREAMS) - 1))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int], index: int) -> None:
    """The CRLF framing may be cut anywhere (even between \\r and \\n)."""
    raw = STREAMS[index].read_bytes()
    points = sorted({c % len(raw) for c in cuts} - {0})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]

    async def handler(r: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(r)
        for p in pieces:
            await resp.write(p)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await collect(url, request())

    got = summarize(asyncio.run(main()))
    assert got == gemini_expected(gemini_chunks(raw), DEP.model)


@pytest.mark.parametrize("name", [
    "mirascope-gemini25flash-text.json",
    "mirascope-gemini25flash-parallel-function-calls.json",
    "mirascope-gemini25flash-thought-parts.json",
    "mirascope-gemini25flash-implicit-cache-hit.json",
    "pydantic-ai-gemini15flash-finish-safety-empty-content.json",
])
def test_non_streaming_recordings(name: str) -> None:
    body = (WHOLE / name).read_bytes()
    seen: dict[str, Any] = {}

    async def handler(r: web.Request) -> web.Response:
        seen["path"], seen["query"] = r.path, dict(r.query)
        return web.Response(body=body, content_type="application/json")

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await collect(url, request(stream=False))

    events = asyncio.run(main())
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["query"] == {}
    assert summarize(events) == gemini_expected([json.loads(body)], DEP.model)


def test_implicit_cache_hit_is_priced_as_cached() -> None:
    body = json.loads((WHOLE / "mirascope-gemini25flash-implicit-cache-hit.json").read_bytes())

    async def main() -> list[Event]:
        async with serve(lambda r: _json(body)) as url:
            return await collect(url, request(stream=False))

    usage = [e for e in asyncio.run(main()) if isinstance(e, Usage)][0]
    assert (usage.prompt_tokens, usage.cached_tokens) == (3797, 3055)
    assert usage.completion_tokens == 656 + 1549 and usage.reasoning_tokens == 1549
    assert usage.total_tokens == body["usageMetadata"]["totalTokenCount"]
    assert usage.provider_total == 6002 and usage.output_tokens == 656 + 1549


async def _json(obj: Any, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status)


# --- errors ---------------------------------------------------------------------------


def _error(status: int, raw: bytes, headers: dict[str, str] | None = None) -> UpstreamError:
    async def handler(r: web.Request) -> web.Response:
        return web.Response(status=status, body=raw, headers=headers,
                            content_type="text/event-stream")

    async def main() -> None:
        async with serve(handler) as url:
            await collect(url, request())

    with pytest.raises(UpstreamError) as info:
        asyncio.run(main())
    return info.value


def test_blocked_prompt_recording_is_a_content_filter_error_with_the_reason() -> None:
    err = _error(200, BLOCKED.read_bytes())
    assert (err.status, err.code, err.retryable) == (400, "content_filter", False)
    assert "blockReason: SAFETY" in err.message


def test_invalid_api_key_recording_is_misconfiguration_and_falls_back() -> None:
    raw = (WHOLE / "mirascope-gemini-stream-error-400-api-key-invalid.json").read_bytes()
    err = _error(400, raw)
    assert err.misconfigured and err.retryable and err.status == 502
    assert KEY not in err.message


def test_model_not_found_recording_is_a_client_error() -> None:
    raw = (WHOLE / "mirascope-gemini-stream-error-404-not-found.json").read_bytes()
    err = _error(404, raw)
    assert not err.retryable and err.status == 404 and err.code == "NOT_FOUND"
    assert "is not found for API version v1beta" in err.message


def test_unframed_error_body_with_status_200_is_still_an_error() -> None:
    raw = (WHOLE / "mirascope-gemini-stream-error-404-not-found.json").read_bytes()
    err = _error(200, raw)
    assert not err.retryable and err.status == 404


def test_resource_exhausted_honours_retry_delay() -> None:
    body = {"error": {"code": 429, "message": "Resource has been exhausted",
                      "status": "RESOURCE_EXHAUSTED", "details": [
                          {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                           "retryDelay": "17s"}]}}
    err = _error(429, json.dumps(body).encode())
    assert err.retryable and err.status == 429 and err.retry_after == 17.0


@pytest.mark.parametrize(("status", "rpc"), [(500, "INTERNAL"), (503, "UNAVAILABLE"),
                                             (504, "DEADLINE_EXCEEDED")])
def test_server_errors_are_retryable(status: int, rpc: str) -> None:
    body = {"error": {"code": status, "message": "try later", "status": rpc}}
    err = _error(status, json.dumps(body).encode())
    assert err.retryable and not err.misconfigured and err.status in (502, 503, 504)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_misconfiguration(status: int) -> None:
    body = {"error": {"code": status, "message": f"bad key {KEY}", "status": "PERMISSION_DENIED"}}
    err = _error(status, json.dumps(body).encode())
    assert err.misconfigured and KEY not in err.message


def test_stream_cut_before_the_finish_reason_is_an_error() -> None:
    raw = (CONFORMANCE / "streams/gemini/mirascope-gemini25flash-text-thoughtstokens.sse")
    first = raw.read_bytes().split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    got: list[Event] = []

    async def main() -> None:
        async with serve(lambda r: write_sse(r, first)) as url:
            config = ProviderConfig(type="gemini", base_url=url, api_key=KEY)
            async with aiohttp.ClientSession() as session:
                async for e in GeminiProvider("gem", config, session).stream(request(), DEP):
                    got.append(e)

    with pytest.raises(UpstreamError) as info:
        asyncio.run(main())
    assert info.value.retryable and "ended the stream early" in info.value.message
    assert summarize(got).text.startswith("To find the sum")


def test_error_event_inside_the_stream() -> None:
    raw = (b'data: {"error": {"code": 503, "message": "overloaded", '
           b'"status": "UNAVAILABLE"}}\r\n\r\n')
    events: list[Event] = []

    async def main() -> None:
        async with serve(lambda r: write_sse(r, raw)) as url:
            events.extend(await collect(url, request()))

    with pytest.raises(UpstreamError) as info:
        asyncio.run(main())
    assert info.value.retryable and info.value.status == 503


# --- request translation ----------------------------------------------------------------


def build(**body: Any) -> dict[str, Any]:
    req = request(**body)
    return build_generate_request(req.body, req.messages, req.tools, req.max_output_tokens)


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}]


def test_system_multi_turn_and_images() -> None:
    out = build(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "gs://bucket/cat.jpg"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]},
        {"role": "assistant", "content": "Un chat."},
        {"role": "user", "content": "merci"},
    ], temperature=0.2, top_p=0.9, stop="END", seed=3, max_tokens=100, n=2,
        extra_field_for_openai_only=1)
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert out["contents"] == [
        {"role": "user", "parts": [
            {"text": "what is this?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpg"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}]},
        {"role": "model", "parts": [{"text": "Un chat."}]},
        {"role": "user", "parts": [{"text": "merci"}]},
    ]
    assert out["generationConfig"] == {
        "maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "seed": 3,
        "candidateCount": 2, "stopSequences": ["END"]}


def test_tools_calls_results_and_thought_signatures_round_trip() -> None:
    """A signed call from a recording goes back to Gemini with its signature."""
    raw = (CONFORMANCE / "streams/gemini/mirascope-gemini25flash-parallel-function-calls.sse")
    events, _ = replay(raw.read_bytes(), request(tools=WEATHER))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    recorded = gemini_chunks(raw.read_bytes())[0]["candidates"][0]["content"]["parts"]
    assert split_tool_call_id(calls[0].id or "")[1] == recorded[0]["thoughtSignature"]
    assert split_tool_call_id(calls[1].id or "")[1] is None  # only the first is signed
    assert calls[0].id != calls[1].id
    out = build(tools=WEATHER, tool_choice="required", messages=[
        {"role": "user", "content": "two secrets"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]},
        {"role": "tool", "tool_call_id": calls[1].id, "content": '{"secret": 2}'},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "plain text"},
    ])
    assert out["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather",
        "parametersJsonSchema": WEATHER[0]["function"]["parameters"]}]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    model_turn, results = out["contents"][1], out["contents"][2]
    assert model_turn == {"role": "model", "parts": [
        {"functionCall": {"name": "secret_retrieval_tool", "args": {"password": "mellon"}},
         "thoughtSignature": recorded[0]["thoughtSignature"]},
        {"functionCall": {"name": "secret_retrieval_tool", "args": {"password": "radiance"}}},
    ]}
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"name": "secret_retrieval_tool",
                              "response": {"output": {"secret": 2}}}},
        {"functionResponse": {"name": "secret_retrieval_tool",
                              "response": {"output": "plain text"}}},
    ]}


def test_googles_extra_content_signature_is_accepted() -> None:
    out = build(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{
            "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "c2ln"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ])
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == "c2ln"


@pytest.mark.parametrize(("choice", "want"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"mode": "ANY", "allowedFunctionNames": ["get_weather"]})])
def test_tool_choice(choice: Any, want: dict[str, Any]) -> None:
    assert build(tools=WEATHER, tool_choice=choice)["toolConfig"] == {
        "functionCallingConfig": want}


@pytest.mark.parametrize(("effort", "want"), [
    ("none", {"thinkingBudget": 0}),
    ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("medium", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("high", {"thinkingBudget": 24576, "includeThoughts": True})])
def test_reasoning_effort_sets_the_thinking_budget(effort: str, want: dict[str, Any]) -> None:
    assert build(reasoning_effort=effort)["generationConfig"]["thinkingConfig"] == want


def test_json_schema_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    gen = build(response_format=fmt)["generationConfig"]
    assert gen == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    gen = build(response_format={"type": "json_object"})["generationConfig"]
    assert gen == {"responseMimeType": "application/json"}


@pytest.mark.parametrize("messages", [
    [{"role": "tool", "tool_call_id": "nowhere", "content": "x"}],
    [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                           "function": {"name": "f", "arguments": "{no"}}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
    [{"role": "user", "content": [{"type": "image_url",
                                   "image_url": {"url": "https://example.com/img"}}]}],
])
def test_untranslatable_requests_are_client_errors(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequest):
        build(messages=messages)


def test_deployment_output_cap_is_sent() -> None:
    seen: dict[str, Any] = {}
    raw = (CONFORMANCE / "streams/gemini/pydantic-ai-gemini20flashexp-text.sse").read_bytes()

    async def handler(r: web.Request) -> web.StreamResponse:
        seen["body"] = await r.json()
        return await write_sse(r, raw)

    async def main() -> None:
        async with serve(handler) as url:
            await collect(url, request(), DeploymentConfig(
                provider="gem", model="gemini-2.5-flash", max_output_tokens=77))

    asyncio.run(main())
    assert seen["body"]["generationConfig"] == {"maxOutputTokens": 77}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["candidates", "content", "parts", "text", "thought", "functionCall",
                         "args", "name", "finishReason", "index", "usageMetadata",
                         "promptTokenCount", "promptFeedback", "blockReason", "error", "code"]),
        inner, max_size=4),
    max_leaves=14)


@settings(max_examples=100, deadline=None)
@given(objs=st.lists(_JSON, max_size=5))
def test_malformed_objects_are_upstream_errors_never_crashes(objs: list[Any]) -> None:
    from tollway.providers.gemini.response import CandidateTranslator

    translator = CandidateTranslator()
    try:
        for obj in objs:
            translator.feed(obj)
        translator.final_usage()
    except UpstreamError:
        pass
