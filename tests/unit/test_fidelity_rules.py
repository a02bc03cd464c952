"""The wire-fidelity rules as functions: the cap field, its config check, and the
unknown-field invariant (provider fields pass; tollway's own fields always win)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.api.encode import collect
from tollway.api.sse import sse_stream
from tollway.cli import main
from tollway.config import ConfigError, DeploymentConfig, ProviderConfig, parse_settings
from tollway.providers.base import ChatRequest
from tollway.providers.openai_compat import (
    ChunkReader,
    OpenAIProvider,
    events_from_completion,
)


def _body(base_url: str, client: dict[str, Any], **dep: Any) -> dict[str, Any]:
    provider = OpenAIProvider("p", ProviderConfig(type="openai", base_url=base_url), None)  # type: ignore[arg-type]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **client}
    request = ChatRequest(body=body, model="m", stream=False, include_usage=False,
                          messages=body["messages"], max_output_tokens=100)
    return provider.build_body(request, DeploymentConfig(provider="p", model="m", **dep))


@pytest.mark.parametrize(("base_url", "client", "dep", "field"), [
    ("https://api.openai.com/v1", {}, {}, "max_completion_tokens"),
    ("https://api.openai.com/v1", {"max_tokens": 100}, {}, "max_tokens"),  # the client's
    ("https://api.openai.com/v1", {}, {"max_tokens_field": "max_tokens"},
     "max_completion_tokens"),  # OpenAI's own host: the field its models all take
    ("http://127.0.0.1:8000/v1", {}, {}, "max_tokens"),  # the documented default
    ("http://127.0.0.1:8000/v1", {}, {"max_tokens_field": "max_completion_tokens"},
     "max_completion_tokens"),
    ("http://127.0.0.1:8000/v1", {"max_completion_tokens": 100},
     {"max_tokens_field": "max_tokens"}, "max_completion_tokens"),
    ("https://api.openai.com.evil.example/v1", {}, {}, "max_tokens"),
])
def test_cap_field_rule(base_url: str, client: dict[str, Any], dep: dict[str, Any],
                        field: str) -> None:
    body = _body(base_url, client, **dep)
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    assert body[field] == 100 and other not in body


def _config(dep: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"providers": {"up": {"type": "openai", "base_url": "http://x",
                                 "options": options or {}}},
            "models": {"m": {"deployments": [{"provider": "up", "model": "m", "prices": "free",
                                          **dep}]}}}


def test_check_config_rejects_a_bad_cap_field(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="models.m.deployments.0.max_tokens_field"):
        parse_settings(_config({"max_tokens_field": "max_output_tokens"}))
    with pytest.raises(ConfigError, match="options.max_tokens_field"):
        parse_settings(_config({}, {"max_tokens_field": "maxTokens"}))
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(_config({"max_tokens_field": "tokens"})))
    assert main(["check-config", str(path)]) == 2
    assert "max_tokens_field" in capsys.readouterr().err
    assert parse_settings(_config({"max_tokens_field": "max_completion_tokens"}))


OWNED_TOP = {"id": "up-id", "object": "up", "created": 1, "model": "up-model",
             "usage": None}
KEYS = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5),
                   st.lists(st.integers(0, 3), max_size=3))
FIELDS = st.dictionaries(KEYS, VALUES, max_size=4)


async def _drain_sse(events: list[Any]) -> list[dict[str, Any]]:
    async def source() -> Any:
        for e in events:
            yield e

    out = []
    async for raw in sse_stream(source(), response_id="chatcmpl-own", created=42,
                                model="alias", include_usage=False,
                                usage_on_final_chunk=True):
        if raw.startswith(b"data: {"):
            out.append(json.loads(raw[6:]))
    return out


@settings(max_examples=150, deadline=None)
@given(top=FIELDS, on_choice=FIELDS, on_delta=FIELDS, text=st.text(min_size=1, max_size=5))
def test_provider_fields_pass_and_never_overwrite_owned_ones(
        top: dict[str, Any], on_choice: dict[str, Any], on_delta: dict[str, Any],
        text: str) -> None:
    chunk = {**top, **OWNED_TOP, "choices": [{
        **on_choice, "index": 0, "finish_reason": "stop", "logprobs": None,
        "delta": {**on_delta, "content": text, "role": "assistant"}}]}
    reader = ChunkReader()
    events = reader.feed(chunk) + reader.end()
    chunks = asyncio.run(_drain_sse(events))
    unknown_top = {k: v for k, v in top.items() if k not in OWNED_TOP and k not in
                   ("choices", "system_fingerprint", "service_tier", "obfuscation")}
    unknown_choice = {k: v for k, v in on_choice.items()
                      if k not in ("index", "delta", "message", "logprobs", "finish_reason")}
    unknown_delta = {k: v for k, v in on_delta.items() if k not in (
        "role", "content", "refusal", "reasoning_content", "reasoning", "tool_calls",
        "function_call")}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == text
    for c in chunks:  # tollway's own fields, whatever the upstream sent
        assert (c["id"], c["object"], c["created"], c["model"]) == \
            ("chatcmpl-own", "chat.completion.chunk", 42, "up-model")
        assert c["choices"][0]["index"] == 0
    merged_top = {k: v for c in chunks for k, v in c.items() if k in unknown_top}
    assert merged_top == unknown_top
    first = chunks[0]["choices"][0]
    assert {k: first[k] for k in unknown_choice} == unknown_choice
    assert {k: first["delta"][k] for k in unknown_delta} == unknown_delta
    # the same upstream answer, not streamed: the same fields, the same owners
    whole = {**top, **OWNED_TOP, "choices": [{
        **on_choice, "index": 0, "finish_reason": "stop",
        "message": {**on_delta, "role": "assistant", "content": text}}]}

    async def source() -> Any:
        for e in events_from_completion(whole):
            yield e

    body = asyncio.run(collect(source(), response_id="chatcmpl-own", created=42,
                               fallback_model="alias"))
    assert (body["id"], body["object"], body["created"], body["model"]) == \
        ("chatcmpl-own", "chat.completion", 42, "up-model")
    assert {k: body[k] for k in unknown_top} == unknown_top
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["message"]["content"] == text
    assert {k: choice[k] for k in unknown_choice} == unknown_choice
    assert {k: choice["message"][k] for k in unknown_delta} == unknown_delta


def test_plain_chunks_make_no_provider_fields() -> None:
    """The plain path builds nothing extra."""
    reader = ChunkReader()
    events = reader.feed({"id": "x", "object": "chat.completion.chunk", "created": 1,
                          "model": "m", "system_fingerprint": "fp", "obfuscation": "pad",
                          "choices": [{"index": 0, "delta": {"content": "hi"},
                                       "logprobs": None, "finish_reason": None}]})
    assert [type(e).__name__ for e in events] == ["Start", "TextDelta"]


def test_a_logprobs_field_that_is_not_an_object_is_dropped() -> None:
    """An upstream that puts ``true`` (or a list) where the logprobs object goes: the answer
    is still served, streamed and whole, without it (it crashed the whole answer's merge)."""
    whole = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{
        "index": 0, "finish_reason": "stop", "logprobs": True,
        "message": {"role": "assistant", "content": "hi"}}]}

    async def source() -> Any:
        for e in events_from_completion(whole):
            yield e

    body = asyncio.run(collect(source(), response_id="chatcmpl-own", created=42,
                               fallback_model="alias"))
    assert body["choices"][0]["message"]["content"] == "hi"
    assert body["choices"][0]["logprobs"] is None
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "finish_reason": None, "logprobs": [1, 2],
                          "delta": {"content": "hi"}}]}
    reader = ChunkReader()
    streamed = asyncio.run(_drain_sse(reader.feed(chunk) + reader.end()))
    assert all(c["choices"][0].get("logprobs") is None for c in streamed if c["choices"])
