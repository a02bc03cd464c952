"""The usage model: conventions, totals, and summing calls without counting anything twice."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.chunks import Usage

counts = st.integers(min_value=0, max_value=10**9)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt = draw(counts)
    cached = draw(st.integers(0, prompt))
    writes = draw(st.integers(0, prompt - cached))
    separate = draw(st.booleans())
    completion = draw(counts)
    reasoning = draw(counts) if separate else draw(st.integers(0, completion))
    output = completion + reasoning if separate else completion
    total = draw(st.one_of(st.none(), st.just(prompt + output)))
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached,
        reasoning_tokens=reasoning, cache_write_tokens=writes,
        cache_write_1h_tokens=draw(st.integers(0, writes)),
        reasoning="separate" if separate else "included", provider_total=total,
        extra={"completion_tokens_details": {"audio_tokens": draw(st.integers(0, 9))}},
    )  # fmt: skip


def test_output_and_total_under_both_conventions() -> None:
    openai = Usage(prompt_tokens=10, completion_tokens=300, reasoning_tokens=200,
                   provider_total=310)  # fmt: skip
    xai = Usage(prompt_tokens=10, completion_tokens=100, reasoning_tokens=200,
                reasoning="separate", provider_total=310)  # fmt: skip
    assert openai.output_tokens == xai.output_tokens == 300
    assert openai.total_tokens == xai.total_tokens == 310
    assert Usage(prompt_tokens=4, completion_tokens=5).total_tokens == 9  # none reported
    assert Usage(prompt_tokens=4, completion_tokens=5, reasoning_tokens=3,
                 reasoning="separate").total_tokens == 12  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(usages(), usages())
def test_summing_keeps_every_token_once(a: Usage, b: Usage) -> None:
    s = a.plus(b)
    assert s.output_tokens == a.output_tokens + b.output_tokens
    assert s.prompt_tokens == a.prompt_tokens + b.prompt_tokens
    assert s.reasoning_tokens == a.reasoning_tokens + b.reasoning_tokens
    assert (s.cached_tokens, s.cache_write_tokens, s.cache_write_1h_tokens) == (
        a.cached_tokens + b.cached_tokens, a.cache_write_tokens + b.cache_write_tokens,
        a.cache_write_1h_tokens + b.cache_write_1h_tokens,
    )  # fmt: skip
    assert s.total_tokens == a.total_tokens + b.total_tokens
    if a.reasoning == b.reasoning:  # the provider's own figures, summed
        assert s.completion_tokens == a.completion_tokens + b.completion_tokens
        assert s.reasoning == a.reasoning
    assert s.extra["completion_tokens_details"]["audio_tokens"] == (
        a.extra["completion_tokens_details"]["audio_tokens"]
        + b.extra["completion_tokens_details"]["audio_tokens"]
    )


@given(usages(), st.booleans(), st.none() | st.dictionaries(st.text(max_size=5), counts))
def test_with_cost_is_replace_of_cost_alone(usage: Usage, estimated: bool,
                                             cost: dict[str, int] | None) -> None:
    """``with_cost`` carries every other field, including any added later."""
    usage = dataclasses.replace(usage, estimated=estimated, cost={"old": 1})
    assert usage.with_cost(cost) == dataclasses.replace(usage, cost=cost)
    assert usage.with_cost(cost).extra is usage.extra


def test_with_cost_names_every_field() -> None:
    """A field whose value with_cost did not copy would come back as its default."""
    values = {f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(Usage)) if f.name != "cost"}
    usage = Usage(**values)  # type: ignore[arg-type]
    assert usage.with_cost({"c": 1}) == dataclasses.replace(usage, cost={"c": 1})
