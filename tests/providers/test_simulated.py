"""The simulated provider behaves like a real upstream: the cap in tokens, n choices, usage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway import tokens
from tollway.chunks import Event, Finish, TextDelta, ToolCallDelta, Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.simulated import SimulatedProvider


def run(behaviour: str, *, cap: int | None = None, n: int | None = None,
        content: str = "Hello there, how are you?", **options: Any) -> list[Event]:  # fmt: skip
    body: dict[str, Any] = {} if n is None else {"n": n}
    request = ChatRequest(
        body=body, model="m", stream=True, include_usage=True,
        messages=[{"role": "user", "content": content}], max_output_tokens=cap,
    )  # fmt: skip
    deployment = DeploymentConfig(provider="sim", model=behaviour, options=options)
    provider = SimulatedProvider("sim", ProviderConfig(type="simulated"))

    async def go() -> list[Event]:
        return [e async for e in provider.stream(request, deployment)]

    return asyncio.run(go())


def by_choice(events: list[Event]) -> dict[int, str]:
    out: dict[int, str] = {}
    for e in events:
        if isinstance(e, TextDelta):
            out[e.choice] = out.get(e.choice, "") + e.text
        elif isinstance(e, ToolCallDelta):
            out[e.choice] = out.get(e.choice, "") + (e.name or "") + e.arguments
    return out


def usage_of(events: list[Event]) -> Usage:
    return [e for e in events if isinstance(e, Usage)][-1]


def finishes(events: list[Event]) -> dict[int, str]:
    return {e.choice: e.reason for e in events if isinstance(e, Finish)}


@settings(max_examples=60, deadline=None)
@given(
    behaviour=st.sampled_from(["lorem", "echo", "reasoner", "tool", "refusal"]),
    cap=st.one_of(st.none(), st.integers(1, 80)),
    n=st.integers(1, 4),
    length=st.integers(1, 120),
    content=st.text(min_size=1, max_size=40),
)
def test_the_cap_is_honoured_in_tokens_for_every_choice(
    behaviour: str, cap: int | None, n: int, length: int, content: str
) -> None:
    events = run(behaviour, cap=cap, n=n, tokens=length, content=content,
                 arguments={"expression": "6*7"})  # fmt: skip
    texts, reasons, usage = by_choice(events), finishes(events), usage_of(events)
    assert sorted(reasons) == list(range(n))
    generated = 0
    for choice in range(n):
        counted = tokens.count_text(texts.get(choice, ""))
        if cap is not None:
            assert counted <= cap + 1  # a seam may re-tokenize a little differently
        generated += counted
        if reasons[choice] == "length" and behaviour == "lorem":
            assert counted == cap  # one token a chunk: stops exactly at the cap
    assert abs(usage.completion_tokens - generated) <= n  # what it reports is what it sent
    assert usage.prompt_tokens > 0 and usage.reasoning == "included"


def test_lorem_is_exact_and_n_choices_differ() -> None:
    events = run("lorem", cap=7, n=3, tokens=50)
    texts = by_choice(events)
    assert all(tokens.count_text(t) == 7 for t in texts.values())
    assert len(set(texts.values())) == 3  # real samples differ
    assert finishes(events) == {0: "length", 1: "length", 2: "length"}
    assert usage_of(events).completion_tokens == 21
    chunks = [e for e in events if isinstance(e, TextDelta) and e.choice == 0]
    assert len(chunks) == 7  # one token per chunk


def test_reasoning_counts_against_the_cap_unless_reported_apart() -> None:
    events = run("reasoner", cap=5)
    assert finishes(events) == {0: "length"}
    assert all(e.channel == "reasoning" for e in events if isinstance(e, TextDelta))
    assert usage_of(events).completion_tokens == 5 == usage_of(events).reasoning_tokens
    apart = run("reasoner", cap=5, reasoning_usage="separate")  # reasoning beyond the cap
    usage = usage_of(apart)
    assert usage.reasoning == "separate" and usage.reasoning_tokens > 5
    assert usage.completion_tokens == 5 and usage.output_tokens == 5 + usage.reasoning_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.output_tokens


def test_misbehaving_options() -> None:
    wild = run("lorem", cap=5, tokens=40, ignore_cap=True)
    assert finishes(wild) == {0: "stop"} and usage_of(wild).completion_tokens == 40
    liar = run("lorem", cap=50, tokens=10, extra_output_tokens=1000)
    assert tokens.count_text(by_choice(liar)[0]) == 10
    assert usage_of(liar).completion_tokens == 1010
    running = [e for e in run("lorem", tokens=6, usage="cumulative") if isinstance(e, Usage)]
    assert [u.completion_tokens for u in running] == [1, 2, 3, 4, 5, 6, 6]
    assert not [e for e in run("lorem", tokens=6, usage=False) if isinstance(e, Usage)]


def test_tool_rounds_and_failures() -> None:
    events = run("tool", tool_name="calc", arguments={"x": 1}, tool_rounds=2)
    call = [e for e in events if isinstance(e, ToolCallDelta)]
    assert call[0].name == "calc" and "".join(c.arguments for c in call) == '{"x":1}'
    assert finishes(events) == {0: "tool_calls"}
    cut = run("tool", cap=2, tool_name="calc", arguments={"x": 1})
    assert finishes(cut) == {0: "length"}  # the cap fell inside the call
    with pytest.raises(UpstreamError):
        run("error-midstream", tokens=20)
