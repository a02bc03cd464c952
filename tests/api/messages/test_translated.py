"""/v1/messages to an OpenAI-compatible deployment: the request translated to chat, the
chunk stream translated to Anthropic's events (the anthropic SDK as the client, a local
upstream replaying every OpenAI recording in shared/conformance)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from aiohttp import web

from tests.api.messages.support import OPENAI_STREAMS, REQUESTS, sse_events
from tests.providers.recordings import openai_expected, openai_whole, sse_data
from tests.support.servers import Upstream, run_tollway, send_sse

STREAMS = sorted(p.name for p in OPENAI_STREAMS.glob("*.sse") if "error" not in p.name)
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
        "content_filter": "refusal"}


async def _replay(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = upstream.requests[-1]
    raw = (OPENAI_STREAMS / f"{body['model']}.sse").read_bytes()
    if not body.get("stream"):
        return web.json_response(openai_whole(sse_data(raw)))
    return await send_sse(request, raw, upstream)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, Upstream]]:
    if not OPENAI_STREAMS.is_dir():
        pytest.skip(f"conformance recordings not found at {OPENAI_STREAMS}")
    models = {p.stem: {"deployments": [{"provider": "oa", "model": p.stem}]}
              for p in OPENAI_STREAMS.glob("*.sse")}
    with Upstream(_replay) as up, run_tollway({
        "providers": {"oa": {"type": "openai", "base_url": up.base_url, "api_key": "sk-x"}},
        "models": models,
    }) as url:
        yield url, up


def _client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="tw-any", max_retries=0)


@pytest.mark.parametrize("name", STREAMS)
def test_every_openai_recording_reaches_the_sdk(gateway: tuple[str, Upstream], name: str) -> None:
    url, _up = gateway
    chunks = sse_data((OPENAI_STREAMS / name).read_bytes())
    exp = openai_expected(chunks, name)
    refusal = "".join((c.get("delta") or {}).get("refusal") or ""
                      for chunk in chunks for c in chunk.get("choices") or [])
    args: dict[str, Any] = {"model": name.removesuffix(".sse"), "max_tokens": 1000,
                            "messages": [{"role": "user", "content": "Hi"}]}
    with _client(url).messages.stream(**args) as stream:
        final = stream.get_final_message()
    whole = _client(url).messages.create(**args)
    for message in (final, whole):
        assert message.model == exp.model
        text = "".join(b.text for b in message.content if b.type == "text")
        assert text == exp.text + refusal
        thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
        assert thinking == exp.reasoning
        tools = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        assert tools == exp.tools
        assert message.stop_reason == STOP[exp.finish or "stop"]
        if exp.usage is not None:
            prompt, completion, cached, _reasoning = exp.usage
            assert message.usage.output_tokens == completion
            assert message.usage.cache_read_input_tokens == cached
            assert message.usage.input_tokens == prompt - cached


def test_block_indexes_and_event_order(gateway: tuple[str, Upstream]) -> None:
    url, _up = gateway
    body = {"model": "vercel-ai-deepseek-reasoner-reasoning-then-tool-call", "max_tokens": 100,
            "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    got = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    events = [(name, json.loads(data)) for name, data in sse_events(got.content)]
    names = [n for n, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta",
                                                                      "message_stop"]
    assert events[0][1]["message"]["usage"]["output_tokens"] == 0
    open_index = None
    seen = []
    for name, obj in events:
        if name == "content_block_start":
            assert open_index is None
            open_index = obj["index"]
            seen.append((obj["index"], obj["content_block"]["type"]))
        elif name == "content_block_delta":
            assert obj["index"] == open_index
        elif name == "content_block_stop":
            assert obj["index"] == open_index
            open_index = None
    assert seen == [(0, "thinking"), (1, "tool_use")]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_the_request_is_translated_feature_by_feature(gateway: tuple[str, Upstream]) -> None:
    url, up = gateway
    sent = json.loads((REQUESTS / "mirascope-sdkpy-tools-tool_result-stream.request.json")
                      .read_text())
    body = {**sent, "model": "openai-python-text-basic", "system": [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "temperature": 0.5}
    r = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert r.status_code == 200, r.text
    chat = up.requests[-1]
    assert chat["messages"][0] == {"role": "system",
                                   "content": [{"type": "text", "text": "Be brief."}]}
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    calls = chat["messages"][2]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["secret_retrieval_tool"] * 2
    assert json.loads(calls[0]["function"]["arguments"]) == {"password": "mellon"}
    assert chat["messages"][3]["tool_call_id"] == calls[0]["id"]
    assert chat["tools"][0]["function"]["name"] == "secret_retrieval_tool"
    assert (chat["stop"], chat["user"], chat["temperature"]) == (["END"], "u-1", 0.5)
    assert chat["max_tokens"] == sent["max_tokens"] and chat["stream"] is True

    image = json.loads((REQUESTS / "mirascope-sdkpy-image-base64.request.json").read_text())
    r = httpx.post(url + "/v1/messages", headers={"x-api-key": "k"},
                   json={**image, "model": "openai-python-text-basic"})
    assert r.status_code == 200, r.text
    part = up.requests[-1]["messages"][0]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith(
        "data:image/png;base64,iVBOR")


@pytest.mark.parametrize("extra", [
    {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
    {"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]},
    {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]},
])
def test_what_chat_cannot_express_is_a_400(gateway: tuple[str, Upstream],
                                           extra: dict[str, Any]) -> None:
    url, up = gateway
    before = len(up.requests)
    body = {"model": "openai-python-text-basic", "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hi"}], **extra}
    r = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "no chat-completions equivalent" in r.json()["error"]["message"]
    assert len(up.requests) == before


def test_platform_tools_run_inside_an_anthropic_stream() -> None:
    config = {
        "providers": {"sim": {"type": "simulated", "options": {"tokens_per_second": 0}}},
        "models": {"calc": {"deployments": [{"provider": "sim", "model": "tool", "options": {
            "tool_name": "calculator", "arguments": '{"expression": "6*7"}'}}]}},
        "tools": {"calculator": {}},
    }
    with run_tollway(config) as url:
        client = _client(url)
        args: dict[str, Any] = {"model": "calc", "max_tokens": 200, "extra_body": {
            "platform_tools": ["calculator"]}, "messages": [{"role": "user", "content": "6*7?"}]}
        with client.messages.stream(**args) as stream:
            final = stream.get_final_message()
        whole = client.messages.create(**args)
    for message in (final, whole):
        kinds = [b.type for b in message.content]
        at = kinds.index("server_tool_use")
        assert kinds[at + 1] == "platform_tool_result", kinds
        use, result = message.content[at], message.content[at + 1]
        assert (use.name, use.input) == ("calculator", {"expression": "6*7"})
        assert result.tool_use_id == use.id and not result.is_error
        assert "42" in json.dumps(result.content)
        assert "42" in "".join(b.text for b in message.content if b.type == "text")
        assert message.stop_reason == "end_turn"


REQUEST_FILES = sorted(REQUESTS.glob("*.request.json")) if REQUESTS.is_dir() else []


@pytest.mark.parametrize("path", REQUEST_FILES, ids=lambda p: p.name)
def test_every_recorded_request_translates_or_is_refused_clearly(
    gateway: tuple[str, Upstream], path: Any
) -> None:
    url, up = gateway
    body = {**json.loads(path.read_text()), "model": "openai-python-text-basic"}
    counting = "count_tokens" in path.name
    before = len(up.requests)
    r = httpx.post(url + ("/v1/messages/count_tokens" if counting else "/v1/messages"),
                   json=body, headers={"x-api-key": "k"})
    assert r.status_code == 200, r.text
    if counting:  # counted by tollway (no Anthropic deployment), nothing sent upstream
        assert r.json()["input_tokens"] > 0 and len(up.requests) == before
        return
    chat = up.requests[-1]
    assert chat["model"] == "openai-python-text-basic" and chat["messages"]
    assert all(m["role"] in ("system", "user", "assistant", "tool") for m in chat["messages"])
    parts = [p for m in chat["messages"] if isinstance(m.get("content"), list)
             for p in m["content"]]
    assert {p["type"] for p in parts} <= {"text", "image_url", "file"}
