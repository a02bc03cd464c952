"""A response that is not streamed is read once it has ended (``StreamFilter(whole=True)``):
the same text released and the same findings as reading it as it streams, with no
rule asked whether it is still open at the end of a piece."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tollway.firewalls.scanner as scanner_module
from tests.firewalls.test_property import POLICIES, PRESET_NAMES, text_and_split
from tollway.chunks import Event, Finish, Start, TextDelta, ToolCallDelta, Usage
from tollway.context import RequestContext
from tollway.firewalls.scanner import _Bucket
from tollway.firewalls.stage import response_firewall
from tollway.providers.base import ChatRequest

CARD = "4111 1111 1111 1111"


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Where a rule is asked whether it is still open at the end of the text so far."""
    positions: list[int] = []
    real = _Bucket.open

    def counted(self: _Bucket, buf: str, p: int, ascii: bool) -> bool:
        positions.append(p)
        return real(self, buf, p, ascii)

    monkeypatch.setattr(_Bucket, "open", counted)
    return positions


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=text_and_split(), name=st.sampled_from(PRESET_NAMES))
def test_a_whole_reading_releases_and_finds_what_a_streamed_one_does(
    case: tuple[str, list[str]], name: str
) -> None:
    _, pieces = case
    scanner = POLICIES.get(name).scanner
    streamed, whole = scanner.stream(), scanner.stream(whole=True)
    out = [streamed.feed(p) for p in pieces]
    assert all(whole.feed(p) == "" for p in pieces)  # nothing is released before the end
    assert "".join(out) + streamed.flush() == whole.flush()
    assert (whole.blocked, whole.found()) == (streamed.blocked, streamed.found())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=text_and_split(), name=st.sampled_from(PRESET_NAMES))
def test_a_whole_reading_cut_short_finds_what_a_streamed_one_had_found(
    case: tuple[str, list[str]], name: str
) -> None:
    _, pieces = case
    scanner = POLICIES.get(name).scanner
    streamed, whole = scanner.stream(), scanner.stream(whole=True)
    for p in pieces:
        streamed.feed(p)
        whole.feed(p)
    whole.settle()
    assert (whole.blocked, whole.found()) == (streamed.blocked, streamed.found())


def test_a_whole_reading_asks_no_rule_whether_it_is_still_open(asked: list[int]) -> None:
    scanner = POLICIES.get("strict-block").scanner
    text = "Write to bob at the office, then call me at the usual number. " * 4
    f = scanner.stream(whole=True)
    f.feed(text)
    assert f.flush() == text and asked == []
    g = scanner.stream()  # streamed, every word start near the end is asked
    g.feed(text)
    g.flush()
    assert asked


class Upstream:
    def __init__(self, events: Sequence[Event]) -> None:
        self.events, self.pulled = list(events), 0

    async def gen(self) -> AsyncIterator[Event]:
        for ev in self.events:
            self.pulled += 1
            yield ev


def run(
    events: Sequence[Event],
    *,
    stream: bool,
    body: dict[str, Any] | None = None,
    tools: list[Any] | None = None,
    policy: str = "strict-block",
) -> tuple[list[Event], RequestContext, Upstream]:
    up = Upstream(events)
    ctx = RequestContext("req")
    ctx.request = ChatRequest(
        body=body or {},
        model="m",
        stream=stream,
        include_usage=False,
        messages=[{"role": "user", "content": "hi"}],
    )
    ctx.platform_tools = tools

    async def main() -> list[Event]:
        return [ev async for ev in response_firewall(POLICIES.get(policy))(up.gen(), ctx)]

    return asyncio.run(main()), ctx, up


def text_of(events: Sequence[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_a_response_that_is_not_streamed_is_read_at_its_end_with_the_same_outcome() -> None:
    pieces = ["Mail bob@exa", "mple.com or ", "call +1 415 ", "555 2671. Card ", CARD, " ok"]
    events = [Start("m"), *[TextDelta(p) for p in pieces], Finish("stop"), Usage(3, 9)]
    whole, whole_ctx, _ = run(events, stream=False, policy="redact-pii")
    streamed, streamed_ctx, _ = run(events, stream=True, policy="redact-pii")
    assert (
        text_of(whole)
        == text_of(streamed)
        == ("Mail [REDACTED:email] or call [REDACTED:phone]. Card [REDACTED:credit_card] ok")
    )
    # the text comes out at the choice's end, in one piece, just before its finish
    assert [type(e).__name__ for e in whole] == ["Start", "TextDelta", "Finish", "Usage"]
    assert whole_ctx.firewall_verdicts == streamed_ctx.firewall_verdicts


def test_a_block_in_a_whole_response_gives_what_came_before_it() -> None:
    events = [TextDelta("Your card is 4111 "), TextDelta("1111 1111 1111 thanks"), Finish("stop")]
    out, ctx, _ = run(events, stream=False)
    assert text_of(out) == "Your card is "
    assert out[-1] == Finish("content_filter")
    assert ctx.firewall_verdicts == [
        {"detector": "credit_card", "action": "block", "where": "response", "count": 1}
    ]


def test_tool_call_arguments_of_a_whole_response_are_read_at_the_end() -> None:
    events = [
        ToolCallDelta(0, '{"to": "bob@', id="call_1", name="send"),
        ToolCallDelta(0, 'example.com"}'),
        Finish("tool_calls"),
    ]
    out, _, _ = run(events, stream=False, policy="redact-pii")
    args = "".join(e.arguments for e in out if isinstance(e, ToolCallDelta))
    assert args == '{"to": "[REDACTED:email]"}'
    first = next(e for e in out if isinstance(e, ToolCallDelta))
    assert (first.id, first.name) == ("call_1", "send")


def test_with_platform_tools_a_block_still_stops_the_loop_before_its_next_round() -> None:
    # the tool loop runs a round's tools when the stage asks for the next event: a block
    # must be seen in the text as it comes, or a tool would run after blocked text
    events = [
        TextDelta(f"Card {CARD} then"),
        TextDelta(" more"),
        TextDelta(" and more"),
        Finish("stop"),
    ]
    _, _, with_tools = run(events, stream=False, tools=[object()])
    _, _, streamed = run(events, stream=True)
    assert with_tools.pulled == streamed.pulled == 1
    _, _, without = run(events, stream=False)  # nothing runs between the parts: read at the end
    assert without.pulled == len(events)


def test_log_probabilities_survive_on_uncut_deltas_of_a_whole_response() -> None:
    lp = {"content": [{"token": "Hi", "logprob": -0.1}]}
    events = [TextDelta("Hi there. ", logprobs=lp), Finish("stop")]
    out, _, _ = run(events, stream=False, body={"logprobs": True})
    assert any(isinstance(e, TextDelta) and e.logprobs == lp for e in out)


def test_a_whole_response_cut_short_keeps_the_verdicts_of_what_came() -> None:
    async def source() -> AsyncIterator[Event]:
        yield TextDelta(f"Card {CARD} and bob@example.com, then ")
        await asyncio.sleep(3600)  # the client leaves meanwhile
        yield Finish("stop")

    ctx = RequestContext("req")
    ctx.request = ChatRequest(body={}, model="m", stream=False, include_usage=False, messages=[])

    async def main() -> None:
        events = response_firewall(POLICIES.get("monitor"))(source(), ctx)
        task = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await events.aclose()

    asyncio.run(main())
    found = {v["detector"]: v["count"] for v in ctx.firewall_verdicts}
    assert found == {"credit_card": 1, "email": 1}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=text_and_split(),
    name=st.sampled_from(PRESET_NAMES),
    batch=st.integers(1, 40),
    keep=st.booleans(),
)
def test_a_whole_reading_in_passes_releases_and_finds_what_a_streamed_one_does(
    case: tuple[str, list[str]], name: str, batch: int, keep: bool
) -> None:
    # a reading nobody reads (keep False) is decided a batch at a time; one that is kept,
    # at its end alone
    _, pieces = case
    scanner = POLICIES.get(name).scanner
    streamed = scanner.stream()
    expected = "".join(streamed.feed(p) for p in pieces) + streamed.flush()
    with patch.object(scanner_module, "_WHOLE_BATCH", batch):
        whole = scanner.stream(whole=True, keep=keep)
        out = []
        for p in pieces:
            out.append(whole.feed(p))
            if whole.blocked is None:
                assert out[-1] == ""
        out.append(whole.flush())
    assert (whole.blocked, whole.found()) == (streamed.blocked, streamed.found())
    if keep:
        assert "".join(out) == expected
    else:
        assert "".join(out) == ""


def test_a_policy_that_only_counts_reads_a_stream_at_its_end(asked: list[int]) -> None:
    pieces = ["Mail bob@exa", "mple.com or ", "call +1 415 ", "555 2671. Card ", CARD, " ok"]
    events = [Start("m"), *[TextDelta(p) for p in pieces], Finish("stop"), Usage(3, 9)]
    out, ctx, _ = run(events, stream=True, policy="monitor")
    assert out == events  # passed through as they came
    assert asked == []
    expected = POLICIES.get("monitor").scanner.scan("".join(pieces)).counts
    assert {v["detector"]: v["count"] for v in ctx.firewall_verdicts} == expected
    assert all(v["action"] == "monitor" for v in ctx.firewall_verdicts)
