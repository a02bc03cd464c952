"""The SSE encoder: canonical one-line JSON per chunk, usage placement, role first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from tests.support.schemas import validate
from tollway.api.sse import sse_stream
from tollway.chunks import Event, Finish, Start, StreamError, TextDelta, ToolCallDelta, Usage

EVENTS: list[Event] = [
    Start("served-model", system_fingerprint="fp_1"),
    TextDelta("think", "reasoning"),
    TextDelta("Hel"),
    TextDelta('lo "world"\n', logprobs={"content": [], "refusal": None}),
    TextDelta("ü✓"),
    ToolCallDelta(0, '{"a"', "call_1", "f"),
    ToolCallDelta(0, ": 1}"),
    TextDelta("second choice", choice=1),
    Finish("stop", choice=1),
    Finish("tool_calls"),
    Usage(prompt_tokens=3, completion_tokens=5, cached_tokens=1),
]


async def _aiter(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


def _encode(events: list[Event], include_usage: bool, on_final: bool = True) -> list[bytes]:
    async def run() -> list[bytes]:
        return [b async for b in sse_stream(_aiter(events), response_id="chatcmpl-1", created=7,
                                            model="alias", include_usage=include_usage,
                                            usage_on_final_chunk=on_final)]
    return asyncio.run(run())


@pytest.mark.parametrize("include_usage", [True, False])
def test_chunks_are_canonical_and_valid(include_usage: bool) -> None:
    out = _encode(EVENTS, include_usage)
    assert out[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(b[6:]) for b in out[:-1]]
    for raw, chunk in zip(out[:-1], chunks, strict=True):
        assert raw == b"data: " + orjson.dumps(chunk) + b"\n\n"  # compact, one line
        validate(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["model"] == "served-model" and chunk["system_fingerprint"] == "fp_1"
        assert list(chunk)[:4] == ["id", "object", "created", "model"]
    roles = [(c["choices"][0]["index"], c["choices"][0]["delta"].get("role"))
             for c in chunks if c["choices"]]
    assert roles[0] == (0, "assistant") and (1, "assistant") in roles
    assert sum(1 for _, r in roles if r) == 2
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 8
    else:
        assert all("usage" not in c for c in chunks[:-1])
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 1


def test_strict_mode_has_no_usage_without_include_usage() -> None:
    out = _encode(EVENTS, include_usage=False, on_final=False)
    assert all(b'"usage"' not in b for b in out)


def test_error_event_ends_the_stream() -> None:
    out = _encode([Start("m"), TextDelta("a"), StreamError(502, "boom")], include_usage=False)
    assert orjson.loads(out[-1][6:]) == {
        "error": {"message": "boom", "type": "api_error", "param": None, "code": None}}
    assert b"data: [DONE]\n\n" not in out


def test_missing_finish_is_synthesised() -> None:
    out = _encode([Start("m"), TextDelta("a")], include_usage=False)
    assert orjson.loads(out[-2][6:])["choices"][0]["finish_reason"] == "stop"
