"""Usage as providers report it: conventions (reasoning inside or outside completion), caches.

The OpenAI shape is read from a real recording; the xAI shape is xAI's documented
one (reasoning reported beside ``completion_tokens``, ``total_tokens`` including
it); the Anthropic shapes come from the recorded streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tollway.chunks import Start, Usage
from tollway.providers.anthropic import MessageTranslator, usage_from_anthropic
from tollway.providers.openai_compat import usage_from_openai

STREAMS = Path(__file__).resolve().parents[3] / "shared/conformance/streams"

XAI = {
    "prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
    "prompt_tokens_details": {"text_tokens": 32, "audio_tokens": 0, "image_tokens": 0,
                              "cached_tokens": 6},
    "completion_tokens_details": {"reasoning_tokens": 94, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
    "num_sources_used": 0,
}  # fmt: skip
OPENAI_REASONING = {
    "prompt_tokens": 32, "completion_tokens": 103, "total_tokens": 135,
    "completion_tokens_details": {"reasoning_tokens": 94},
}  # fmt: skip


def _data(path: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line[6:])
        for line in path.read_text().splitlines()
        if line.startswith("data: {")
    ]


def test_openai_recording_is_included() -> None:
    chunks = _data(STREAMS / "openai/vercel-ai-openai-gpt41nano-text-usage-obfuscation.sse")
    raw = next(c["usage"] for c in chunks if c.get("usage"))
    usage = usage_from_openai(raw)
    assert usage.reasoning == "included"
    assert usage.total_tokens == raw["total_tokens"] == usage.prompt_tokens + usage.output_tokens
    assert usage.output_tokens == raw["completion_tokens"]


def test_xai_reasoning_outside_completion_is_detected_and_billed_once() -> None:
    usage = usage_from_openai(XAI)
    assert usage.reasoning == "separate"
    assert usage.completion_tokens == 9 and usage.reasoning_tokens == 94
    assert usage.output_tokens == 103  # billed at the output price
    assert usage.total_tokens == 135  # the provider's total, kept
    assert usage.cached_tokens == 6
    openai = usage_from_openai(OPENAI_REASONING)
    assert openai.reasoning == "included" and openai.output_tokens == 103


@pytest.mark.parametrize(("raw", "stated", "convention", "output"), [
    # no total: reasoning larger than completion cannot be a part of it
    ({"prompt_tokens": 5, "completion_tokens": 9, "completion_tokens_details":
      {"reasoning_tokens": 94}}, "auto", "separate", 103),
    # no total, reasoning within completion: OpenAI's convention
    ({"prompt_tokens": 5, "completion_tokens": 99, "completion_tokens_details":
      {"reasoning_tokens": 94}}, "auto", "included", 99),
    # the deployment says separate: trusted even without a total
    ({"prompt_tokens": 5, "completion_tokens": 99, "completion_tokens_details":
      {"reasoning_tokens": 94}}, "separate", "separate", 193),
    # the deployment says included: trusted even when the total disagrees
    (XAI, "included", "included", 9),
    # a total that fits neither reading: OpenAI's (nothing is invented)
    ({"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 50,
      "completion_tokens_details": {"reasoning_tokens": 4}}, "auto", "included", 9),
])  # fmt: skip
def test_convention_table(raw: dict[str, Any], stated: str, convention: str, output: int) -> None:
    usage = usage_from_openai(raw, stated)
    assert (usage.reasoning, usage.output_tokens) == (convention, output)


def test_odd_numbers_never_crash() -> None:
    usage = usage_from_openai({
        "prompt_tokens": -4, "completion_tokens": "many", "total_tokens": True,
        "completion_tokens_details": None,
    })  # fmt: skip
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 0, 0)
    huge = usage_from_openai({"prompt_tokens": 1e300, "completion_tokens": 2**80})
    assert huge.prompt_tokens == huge.completion_tokens == 1 << 53  # clamped; billing caps


def test_anthropic_recording_usage() -> None:
    translator = MessageTranslator()
    events = []
    for obj in _data(STREAMS / "anthropic/sdkpy-fable-stream-b-fallback.sse"):
        events += translator.feed(obj)
    start = events[0]
    assert isinstance(start, Start) and start.usage is not None
    assert start.usage.prompt_tokens == 31  # the prompt side is known from message_start
    usage = [e for e in events if isinstance(e, Usage)][-1]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cache_write_tokens) == (31, 547, 0)


def test_anthropic_cache_tiers() -> None:
    usage = usage_from_anthropic({
        "input_tokens": 31, "cache_read_input_tokens": 12_000,
        "cache_creation_input_tokens": 3_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 1_000},
        "output_tokens": 547, "output_tokens_details": {"thinking_tokens": 67},
    })  # fmt: skip
    assert usage.prompt_tokens == 31 + 12_000 + 3_000
    assert (usage.cached_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        12_000, 3_000, 1_000,
    )  # fmt: skip
    assert (usage.output_tokens, usage.reasoning_tokens) == (547, 67)  # thinking inside output
    # the tiers alone (no total) and an older shape (no tiers: all 5-minute)
    assert usage_from_anthropic({"cache_creation": {"ephemeral_1h_input_tokens": 5}}) == Usage(
        prompt_tokens=5, cache_write_tokens=5, cache_write_1h_tokens=5
    )
    older = usage_from_anthropic({"input_tokens": 1, "cache_creation_input_tokens": 7})
    assert (older.cache_write_tokens, older.cache_write_1h_tokens) == (7, 0)
