"""The Bedrock adapter against a local server that checks SigV4 and replays recordings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_upstream import serve
from tests.providers.recordings import (
    CONFORMANCE,
    bedrock_event_frame,
    bedrock_events,
    bedrock_expected,
    bedrock_stream_bytes,
    bedrock_whole,
    eventstream_frame,
    summarize,
)
from tollway.chunks import Event, Usage
from tollway.config import ConfigError, DeploymentConfig, ProviderConfig, parse_settings
from tollway.errors import InvalidRequest, UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.bedrock.provider import BedrockProvider
from tollway.providers.bedrock.request import build_converse_request
from tollway.providers.bedrock.response import usage_from_bedrock

RECORDINGS = sorted((CONFORMANCE / "streams" / "bedrock").iterdir())
ACCESS, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "sess-token"
MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
DEP = DeploymentConfig(provider="br", model=MODEL)


def request(stream: bool = True, **body: Any) -> ChatRequest:
    messages = body.pop("messages", [{"role": "user", "content": "hi"}])
    body = {"model": "b", "messages": messages, **body}
    return ChatRequest(body=body, model="b", stream=stream, include_usage=True,
                       messages=messages, tools=body.get("tools"),
                       max_output_tokens=body.get("max_tokens"))


def verify_sigv4(r: web.Request, body: bytes) -> None:
    """Recompute the signature with botocore from what arrived; it must match."""
    auth = r.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {name: r.headers[name] for name in signed}
    aws = AWSRequest(method=r.method, url=f"http://{r.headers['Host']}{r.raw_path}",
                     data=body, headers=headers)
    aws.context["timestamp"] = r.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(ACCESS, SECRET, TOKEN), "bedrock", "us-east-1")
    canonical = signer.canonical_request(aws)
    expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
    assert auth.endswith(f"Signature={expected}"), "SigV4 signature does not verify"
    assert r.headers["X-Amz-Security-Token"] == TOKEN


def provider_config(url: str, **options: Any) -> ProviderConfig:
    return ProviderConfig(type="bedrock", base_url=url, options={
        "region": "us-east-1", "access_key_id": ACCESS, "secret_access_key": SECRET,
        "session_token": TOKEN, **options})


async def collect(url: str, req: ChatRequest, config: ProviderConfig | None = None
                  ) -> list[Event]:
    async with aiohttp.ClientSession() as session:
        provider = BedrockProvider("br", config or provider_config(url), session)
        return [e async for e in provider.stream(req, DEP)]


def replay(wire: bytes, req: ChatRequest, piece: int = 0, status: int = 200,
           headers: dict[str, str] | None = None) -> tuple[list[Event], dict[str, Any]]:
    seen: dict[str, Any] = {}

    async def handler(r: web.Request) -> web.StreamResponse:
        body = await r.read()
        verify_sigv4(r, body)
        seen["path"], seen["body"], seen["accept"] = r.raw_path, json.loads(body), \
            r.headers.get("Accept")
        if status != 200:
            return web.Response(status=status, body=wire, headers=headers,
                                content_type="application/json")
        if not req.stream:
            return web.Response(body=wire, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await resp.prepare(r)
        step = piece or len(wire)
        for i in range(0, len(wire), step):
            await resp.write(wire[i:i + step])
        await resp.write_eof()
        return resp

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await collect(url, req)

    return asyncio.run(main()), seen


@pytest.mark.parametrize("piece", [0, 13])
@pytest.mark.parametrize("path", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_replayed_stream(path: Path, piece: int) -> None:
    raw = path.read_bytes()
    events, seen = replay(bedrock_stream_bytes(raw), request(), piece)
    assert seen["path"] == "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse-stream"
    assert seen["accept"] == "application/vnd.amazon.eventstream"
    assert summarize(events) == bedrock_expected(bedrock_events(raw), MODEL)
    assert isinstance(events[-1], Usage)


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_non_streaming_converse(path: Path) -> None:
    raw = path.read_bytes()
    whole = json.dumps(bedrock_whole(bedrock_events(raw))).encode()
    events, seen = replay(whole, request(stream=False))
    assert seen["path"].endswith("%3A0/converse")
    assert summarize(events) == bedrock_expected(bedrock_events(raw), MODEL)


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=1), flip=st.integers(min_value=0))
def test_a_corrupted_byte_is_caught_by_the_checksums(cut: int, flip: int) -> None:
    raw = (CONFORMANCE / "streams/bedrock/pydantic-ai-converse-stream-text.eventstream")
    wire = bytearray(raw.read_bytes())
    wire[flip % len(wire)] ^= 1 << (cut % 8)
    with pytest.raises(UpstreamError) as info:
        replay(bytes(wire), request(), piece=cut % 97 + 1)
    assert info.value.retryable


def test_throttling_exception_frame_is_retryable() -> None:
    wire = eventstream_frame({":message-type": "exception", ":exception-type":
                              "throttlingException", ":content-type": "application/json"},
                             b'{"message":"Too many requests, please wait before trying again."}')
    with pytest.raises(UpstreamError) as info:
        replay(wire, request())
    assert info.value.retryable and info.value.status == 429
    assert info.value.message.startswith("Too many requests")


@pytest.mark.parametrize(("status", "kind", "retryable", "mapped"), [
    (429, "ThrottlingException", True, 429),
    (503, "ServiceUnavailableException", True, 503),
    (500, "InternalServerException", True, 502),
    (424, "ModelErrorException", True, 502),
    (400, "ValidationException", False, 400),
    (404, "ResourceNotFoundException", False, 404),
])
def test_http_errors(status: int, kind: str, retryable: bool, mapped: int) -> None:
    body = json.dumps({"message": f"{kind} happened"}).encode()
    with pytest.raises(UpstreamError) as info:
        replay(body, request(), status=status,
               headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/"})
    err = info.value
    assert (err.retryable, err.status, err.message) == (retryable, mapped, f"{kind} happened")


def test_access_denied_is_misconfiguration() -> None:
    body = json.dumps({"message": f"bad signature for {ACCESS}"}).encode()
    with pytest.raises(UpstreamError) as info:
        replay(body, request(), status=403, headers={"x-amzn-ErrorType": "AccessDeniedException"})
    assert info.value.misconfigured and ACCESS not in info.value.message


def test_stream_without_message_stop_is_an_error() -> None:
    wire = bedrock_event_frame("messageStart", {"role": "assistant"}) + bedrock_event_frame(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}})
    with pytest.raises(UpstreamError, match="ended the stream early"):
        replay(wire, request())


def test_api_key_is_sent_as_bearer_without_signing() -> None:
    raw = (CONFORMANCE / "streams/bedrock/vercel-ai-converse-stream-text.jsonl").read_bytes()
    seen: dict[str, Any] = {}

    async def handler(r: web.Request) -> web.StreamResponse:
        seen["auth"] = r.headers.get("Authorization")
        resp = web.StreamResponse()
        await resp.prepare(r)
        await resp.write(bedrock_stream_bytes(raw))
        await resp.write_eof()
        return resp

    async def main() -> list[Event]:
        async with serve(handler) as url:
            config = ProviderConfig(type="bedrock", base_url=url, api_key="bedrock-api-key-1",
                                    options={"region": "us-east-1"})
            return await collect(url, request(), config)

    events = asyncio.run(main())
    assert seen["auth"] == "Bearer bedrock-api-key-1"
    assert summarize(events).text.startswith("Let me count")


def test_cache_read_and_write_usage() -> None:
    u = usage_from_bedrock({"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100,
                            "cacheWriteInputTokens": 40, "totalTokens": 155})
    assert (u.prompt_tokens, u.cached_tokens, u.completion_tokens) == (150, 100, 5)
    assert (u.cache_write_tokens, u.total_tokens) == (40, 155)
    # a provider whose input already counts the cached tokens is not counted twice
    u = usage_from_bedrock({"inputTokens": 150, "outputTokens": 5, "cacheReadInputTokens": 100,
                            "cacheWriteInputTokens": 40, "totalTokens": 155})
    assert (u.prompt_tokens, u.cached_tokens) == (150, 100)


@pytest.mark.parametrize(("options", "message"), [
    ({}, "needs options.region"),
    ({"region": "us-east-1", "access_key_id": "AK"}, "go together"),
    ({"region": "us-east-1", "secret_key": "x"}, "unknown credential option"),
])
def test_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"providers": {"br": {"type": "bedrock", "options": options}}})
    assert "providers.br" in str(info.value) and message in str(info.value)


# --- request translation ------------------------------------------------------------------


def build(model: str = MODEL, **body: Any) -> dict[str, Any]:
    req = request(**body)
    return build_converse_request(req.body, req.messages, req.tools, model,
                                  req.max_output_tokens)


def test_messages_tools_and_results() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Find",
                                               "parameters": {"type": "object"}}}]
    out = build(tools=tools, tool_choice="required", temperature=0.5, stop=["X"], max_tokens=50,
                messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "file", "file": {"filename": "a.pdf",
                                      "file_data": "data:application/pdf;base64,JVBERi0="}}]},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "tu_1", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]},
        {"role": "tool", "tool_call_id": "tu_1", "content": "{\"hits\": 2}"},
        {"role": "tool", "tool_call_id": "tu_2", "content": "plain"},
    ])
    assert out["system"] == [{"text": "Be brief."}]
    assert out["messages"] == [
        {"role": "user", "content": [
            {"text": "see"},
            {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
            {"document": {"format": "pdf", "name": "a", "source": {"bytes": "JVBERi0="}}}]},
        {"role": "assistant", "content": [
            {"text": "Looking."},
            {"toolUse": {"toolUseId": "tu_1", "name": "lookup", "input": {"q": 1}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tu_1", "content": [{"json": {"hits": 2}}]}},
            {"toolResult": {"toolUseId": "tu_2", "content": [{"text": "plain"}]}}]},
    ]
    assert out["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.5, "stopSequences": ["X"]}
    assert out["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "lookup", "description": "Find", "inputSchema": {"json": {"type": "object"}}}}],
        "toolChoice": {"any": {}}}


def test_reasoning_effort_on_anthropic_models() -> None:
    out = build(reasoning_effort="medium", temperature=0.3)
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert out["inferenceConfig"] == {"maxTokens": 4096 + 8192}
    other = build(model="amazon.nova-pro-v1:0", reasoning_effort="medium", temperature=0.3)
    assert "additionalModelRequestFields" not in other
    assert other["inferenceConfig"] == {"temperature": 0.3}


def test_several_choices_are_a_client_error() -> None:
    with pytest.raises(InvalidRequest) as info:
        build(n=2)
    assert info.value.param == "n"


def test_remote_images_are_a_client_error() -> None:
    with pytest.raises(InvalidRequest, match="base64 data URL"):
        build(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["text", "delta", "toolUse", "start", "contentBlockIndex", "input",
                         "reasoningContent", "stopReason", "usage", "inputTokens", "x"]),
        inner, max_size=4),
    max_leaves=12)


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(
    ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop",
     "metadata", "unknown"]), _JSON), max_size=8))
def test_malformed_events_are_upstream_errors_never_crashes(events: list[Any]) -> None:
    from tollway.providers.bedrock.response import ConverseTranslator

    translator = ConverseTranslator("m")
    try:
        for kind, obj in events:
            translator.feed(kind, obj)
        translator.final_usage()
    except UpstreamError:
        pass


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=20000), max_size=10),
       index=st.integers(min_value=0, max_value=len(RECORDINGS) - 1))
def test_any_split_of_the_frames_gives_the_same_events(cuts: list[int], index: int) -> None:
    """Frames may be cut anywhere (inside the prelude, headers or checksum)."""
    raw = RECORDINGS[index].read_bytes()
    wire = bedrock_stream_bytes(raw)
    points = sorted({c % len(wire) for c in cuts} - {0})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]

    async def handler(r: web.Request) -> web.StreamResponse:
        await r.read()
        resp = web.StreamResponse()
        await resp.prepare(r)
        for p in pieces:
            await resp.write(p)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def main() -> list[Event]:
        async with serve(handler) as url:
            return await collect(url, request())

    assert summarize(asyncio.run(main())) == bedrock_expected(bedrock_events(raw), MODEL)
