"""Every recorded OpenAI-compatible stream, replayed by a local upstream through tollway.

The expected content, refusal, reasoning, tool calls, finish reasons and usage
are read from the recording itself; the openai SDK must receive the same, and
every chunk tollway emits must fit OpenAI's published chunk schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web
from openai import OpenAI

from tests.support.schemas import CONFORMANCE, validate
from tests.support.servers import Upstream, run_tollway, send_sse

STREAMS = sorted((CONFORMANCE / "streams" / "openai").glob("*.sse"))
ERROR_STREAMS = [p for p in STREAMS if "error" in p.name]
OK_STREAMS = [p for p in STREAMS if p not in ERROR_STREAMS]


def expected_from_recording(path: Path) -> dict[str, Any]:
    """What a client should end up with, read straight from the recorded chunks."""
    out: dict[str, Any] = {"content": "", "refusal": "", "reasoning": "", "tools": {},
                           "finish": None, "usage": None}
    for block in path.read_bytes().split(b"\n\n"):
        block = block.strip()
        if not block.startswith(b"data: ") or block == b"data: [DONE]":
            continue
        chunk = json.loads(block[6:])
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            out["content"] += delta.get("content") or ""
            out["refusal"] += delta.get("refusal") or ""
            out["reasoning"] += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or []:
                slot = out["tools"].setdefault(call.get("index", 0), {"id": None, "name": "",
                                                                     "arguments": ""})
                slot["id"] = slot["id"] or call.get("id")
                fn = call.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out["finish"] = choice["finish_reason"]
    return out


async def _replay(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = await request.json()
    path = CONFORMANCE / "streams" / "openai" / (body["model"] + ".sse")
    return await send_sse(request, path.read_bytes(), upstream)


@pytest.fixture(scope="module")
def replay() -> Iterator[tuple[str, Upstream]]:
    with Upstream(_replay) as upstream:
        config = {
            "providers": {"rec": {"type": "openai", "base_url": upstream.base_url,
                                  "api_key": "sk-upstream-secret"}},
            "models": {p.stem: {"deployments": [{"provider": "rec", "model": p.stem}]}
                       for p in STREAMS},
        }
        with run_tollway(config) as url:
            yield url, upstream


@pytest.mark.parametrize("path", OK_STREAMS, ids=[p.stem for p in OK_STREAMS])
@pytest.mark.parametrize("include_usage", [True, False], ids=["include_usage", "default"])
def test_replayed_stream_reaches_the_sdk_intact(
    replay: tuple[str, Upstream], path: Path, include_usage: bool
) -> None:
    url, upstream = replay
    expected = expected_from_recording(path)
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(
        model=path.stem, messages=[{"role": "user", "content": "replay"}], stream=True, **kwargs))

    sent = upstream.requests[-1]
    assert sent["stream"] is True and sent["stream_options"]["include_usage"] is True
    assert upstream.headers[-1]["Authorization"] == "Bearer sk-upstream-secret"

    got: dict[str, Any] = {"content": "", "refusal": "", "reasoning": "", "tools": {},
                           "finish": None, "usage": None}
    for chunk in chunks:
        if chunk.usage is not None:
            got["usage"] = chunk.usage.model_dump(exclude_none=True)
        for choice in chunk.choices:
            d = choice.delta
            got["content"] += d.content or ""
            got["refusal"] += d.refusal or ""
            got["reasoning"] += getattr(d, "reasoning_content", None) or ""
            for call in d.tool_calls or []:
                slot = got["tools"].setdefault(call.index, {"id": None, "name": "",
                                                            "arguments": ""})
                slot["id"] = slot["id"] or call.id
                slot["name"] += (call.function and call.function.name) or ""
                slot["arguments"] += (call.function and call.function.arguments) or ""
            if choice.finish_reason:
                got["finish"] = choice.finish_reason
    for key in ("content", "refusal", "reasoning", "tools", "finish"):
        assert got[key] == expected[key], key
    for call in got["tools"].values():
        json.loads(call["arguments"])
    if include_usage:
        assert chunks[-1].choices == []
    assert expected["usage"] is not None
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert got["usage"][key] == expected["usage"][key]
    details = (expected["usage"].get("completion_tokens_details") or {}).get("reasoning_tokens")
    if details:
        assert got["usage"]["completion_tokens_details"]["reasoning_tokens"] == details


@pytest.mark.parametrize("path", OK_STREAMS, ids=[p.stem for p in OK_STREAMS])
def test_replayed_chunks_fit_the_schema(replay: tuple[str, Upstream], path: Path) -> None:
    url, _ = replay
    with httpx.stream("POST", url + "/v1/chat/completions", json={
        "model": path.stem, "stream": True, "messages": [{"role": "user", "content": "x"}],
    }) as r:
        body = r.read()
    events = body.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    for event in events[:-2]:
        assert event.startswith(b"data: ") and b"\n" not in event
        validate(json.loads(event[6:]), "CreateChatCompletionStreamResponse")


def test_error_before_content_keeps_the_upstream_status(replay: tuple[str, Upstream]) -> None:
    url, _ = replay
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="vercel-ai-openai-error-first-chunk-numeric-code",
                                       messages=[{"role": "user", "content": "x"}], stream=True)
    assert "bad request" in info.value.message
    with pytest.raises(openai.APIStatusError) as info2:
        client.chat.completions.create(model="vercel-ai-openai-error-first-chunk-server_error",
                                       messages=[{"role": "user", "content": "x"}], stream=True)
    assert info2.value.status_code == 502
    assert "The server had an error" in info2.value.message
    assert "sk-upstream-secret" not in str(info2.value.body)


def test_unknown_fields_pass_through_untouched(replay: tuple[str, Upstream]) -> None:
    url, upstream = replay
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    model = "openai-python-text-basic"
    list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], stream=True,
        temperature=0.3, seed=7, stop=["END"], max_tokens=64, user="u1",
        metadata={"k": "v"}, reasoning_effort="low", n=1,
        extra_body={"top_k": 5, "vendor_option": {"nested": [1, 2]}, "firewall": None},
    ))
    sent = upstream.requests[-1]
    assert sent["top_k"] == 5 and sent["vendor_option"] == {"nested": [1, 2]}
    assert sent["temperature"] == 0.3 and sent["seed"] == 7 and sent["stop"] == ["END"]
    assert sent["max_tokens"] == 64 and sent["user"] == "u1" and sent["metadata"] == {"k": "v"}
    assert sent["reasoning_effort"] == "low" and sent["model"] == model
    assert "firewall" not in sent  # tollway's own extensions never go upstream
