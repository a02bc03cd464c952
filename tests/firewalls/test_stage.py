"""The response stage on synthetic event streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from tollway.chunks import Event, Finish, Start, StreamError, TextDelta, ToolCallDelta, Usage
from tollway.context import RequestContext
from tollway.firewalls import FirewallSet, PolicyConfig, ResponseScope
from tollway.firewalls.stage import response_firewall

POLICIES = FirewallSet.from_config(
    {
        "no-reasoning": PolicyConfig(detectors={"pii": "block"},
                                     response=ResponseScope(reasoning=False)),
        "request-only": PolicyConfig(detectors={"pii": "block"}, where="request"),
    }
)
CARD = "4111 1111 1111 1111"


class Upstream:
    """A source that records how far it was pulled and whether it was closed."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = list(events)
        self.pulled = 0
        self.closed = False

    async def gen(self) -> AsyncIterator[Event]:
        try:
            for ev in self.events:
                self.pulled += 1
                yield ev
        finally:
            self.closed = True


def run(policy: str, events: Sequence[Event]) -> tuple[list[Event], RequestContext, Upstream]:
    up = Upstream(events)
    ctx = RequestContext("req")

    async def main() -> list[Event]:
        stage = response_firewall(POLICIES.get(policy))
        return [ev async for ev in stage(up.gen(), ctx)]

    return asyncio.run(main()), ctx, up


def text_of(events: Sequence[Event], channel: str = "content", choice: int = 0) -> str:
    return "".join(e.text for e in events
                   if isinstance(e, TextDelta) and e.channel == channel and e.choice == choice)


def test_block_card_over_four_chunks_never_reaches_client() -> None:
    pieces = ["Your card is 4111 ", "1111 ", "1111 ", "1111 thanks", " more text"]
    events = [Start("m"), *[TextDelta(p) for p in pieces], Finish("stop"), Usage(5, 7)]
    out, ctx, up = run("strict-block", events)
    sent = text_of(out)
    assert sent == "Your card is "
    assert "4111" not in sent and "1111" not in sent
    assert out[-1] == Finish("content_filter")
    assert not any(isinstance(e, Finish) and e.reason == "stop" for e in out)
    assert up.closed and up.pulled == 5  # stopped pulling right after the block
    assert ctx.firewall_verdicts == [
        {"detector": "credit_card", "action": "block", "where": "response", "count": 1}]


def test_block_key_split_mid_word() -> None:
    pieces = ["token: sk-pr", "oj-Ab3_Ab3_Ab3_", "Ab3_Ab3_Ab3_Ab3_", " done"]
    out, _, up = run("strict-block", [TextDelta(p) for p in pieces] + [Finish("stop")])
    assert text_of(out) == "token: "
    assert out[-1] == Finish("content_filter") and up.closed


def test_clean_stream_passes_and_is_live() -> None:
    pieces = ["Hello", " there", ", how", " are", " you", "?"]
    up = Upstream([TextDelta(p) for p in pieces] + [Finish("stop")])
    ctx = RequestContext("r")

    async def main() -> list[str]:
        seen = []
        stage = response_firewall(POLICIES.get("strict-block"))(up.gen(), ctx)
        async for ev in stage:
            if isinstance(ev, TextDelta):
                seen.append((up.pulled, ev.text))
        return seen

    seen = asyncio.run(main())
    assert "".join(t for _, t in seen) == "Hello there, how are you?"
    assert seen[1][0] <= 3  # text is released while the upstream is still streaming
    assert ctx.firewall_verdicts == []


def test_redact_across_chunks_and_channels() -> None:
    events = [
        TextDelta("mail bo", channel="reasoning"), TextDelta("b@example.com.", channel="reasoning"),
        TextDelta("Sure: amy@exa"), TextDelta("mple.org"), Finish("stop"), Usage(1, 2),
    ]
    out, ctx, _ = run("redact-pii", events)
    assert text_of(out, "reasoning") == "mail [REDACTED:email]."
    assert text_of(out) == "Sure: [REDACTED:email]"
    assert out[-2:] == [Finish("stop"), Usage(1, 2)]
    assert ctx.firewall_verdicts == [
        {"detector": "email", "action": "redact", "where": "response", "count": 2}]


def test_tool_arguments_block_keeps_id_and_name() -> None:
    events = [
        ToolCallDelta(0, "", id="call_1", name="pay"),
        ToolCallDelta(0, '{"card": "4111 1111'),
        ToolCallDelta(0, ' 1111 1111"}'),
        Finish("tool_calls"),
    ]
    out, _, _ = run("strict-block", events)
    assert out[0] == ToolCallDelta(0, "", id="call_1", name="pay")
    args = "".join(e.arguments for e in out if isinstance(e, ToolCallDelta))
    assert args == '{"card": "'
    assert out[-1] == Finish("content_filter")


def test_tool_arguments_redacted_per_call_index() -> None:
    events = [
        ToolCallDelta(0, '{"to": "bob@exa', id="a", name="mail"),
        ToolCallDelta(1, '{"to": "amy@', id="b", name="mail"),
        ToolCallDelta(0, 'mple.com"}'),
        ToolCallDelta(1, 'example.org"}'),
        Finish("tool_calls"),
    ]
    out, _, _ = run("redact-pii", events)
    by_index: dict[int, str] = {}
    for e in out:
        if isinstance(e, ToolCallDelta):
            by_index[e.index] = by_index.get(e.index, "") + e.arguments
    assert by_index == {0: '{"to": "[REDACTED:email]"}', 1: '{"to": "[REDACTED:email]"}'}
    assert out[-1] == Finish("tool_calls")


def test_block_in_one_choice_finishes_all_open_choices() -> None:
    events = [
        TextDelta("fine text ", choice=0), TextDelta("also fine ", choice=1),
        TextDelta("call +1 415 555 2671 now", choice=1), TextDelta("more", choice=0),
        Finish("stop", 0), Finish("stop", 1),
    ]
    out, _, up = run("strict-block", events)
    assert text_of(out, choice=1) == "also fine call "
    finishes = [e for e in out if isinstance(e, Finish)]
    assert finishes == [Finish("content_filter", 0), Finish("content_filter", 1)]
    assert up.closed and up.pulled == 3


def test_flush_at_finish_can_block() -> None:
    out, _, _ = run("strict-block", [TextDelta("ip 10.0.0."), TextDelta("1"), Finish("stop")])
    assert text_of(out) == "ip "
    assert out[-1] == Finish("content_filter")


def test_monitor_passes_events_untouched() -> None:
    events: list[Event] = [TextDelta("mail bob@", logprobs={"x": 1}), TextDelta("example.com"),
                           Finish("stop")]
    out, ctx, _ = run("monitor", events)
    assert out == events
    assert ctx.firewall_verdicts == [
        {"detector": "email", "action": "monitor", "where": "response", "count": 1}]


def test_scope_switches() -> None:
    events = [TextDelta(CARD, channel="reasoning"), TextDelta("ok"), Finish("stop")]
    out, _, _ = run("no-reasoning", events)
    assert out == events
    out, _, _ = run("request-only", [TextDelta(CARD), Finish("stop")])
    assert text_of(out) == CARD


def test_stream_error_releases_held_text_then_the_error() -> None:
    err = StreamError(502, "upstream died", "upstream_error")
    out, ctx, _ = run("strict-block", [TextDelta("hello 4111 1111"), err])
    assert text_of(out) == "hello 4111 1111"  # not a card: released, not lost
    assert out[-1] == err
    out, ctx, _ = run("redact-pii", [TextDelta("mail bob@example.c", choice=0),
                                     TextDelta("ask amy@example.o", choice=1),
                                     TextDelta("om", choice=0), TextDelta("rg", choice=1), err])
    assert text_of(out, choice=0) == "mail [REDACTED:email]"
    assert text_of(out, choice=1) == "ask [REDACTED:email]"
    assert out[-1] == err
    assert ctx.firewall_verdicts == [
        {"detector": "email", "action": "redact", "where": "response", "count": 2}]
    assert ctx.error is None  # the error event itself carries it to the client


def test_stream_error_after_a_held_match_the_block_wins() -> None:
    err = StreamError(502, "upstream died", "upstream_error")
    ctx = RequestContext("req")

    async def source() -> AsyncIterator[Event]:
        for ev in (TextDelta("card 4111 1111 "), TextDelta("1111 1111"),
                   TextDelta("still fine", choice=1)):
            yield ev
        ctx.fail(err.status, err.message, err.code, err.type)  # as the router does
        yield err

    async def main() -> list[Event]:
        return [ev async for ev in response_firewall(POLICIES.get("strict-block"))(
            source(), ctx)]

    out = asyncio.run(main())
    assert text_of(out) == "card "
    assert text_of(out, choice=1) == "still "  # cut with the response, as at a normal end
    assert [e for e in out if isinstance(e, (Finish, StreamError))] == [
        Finish("content_filter", 0), Finish("content_filter", 1)]
    # the client is not told of the error: the request does not end with it
    assert (ctx.status, ctx.error, ctx.error_type, ctx.partial) == (200, None, None, True)
    assert ctx.firewall_verdicts == [
        {"detector": "credit_card", "action": "block", "where": "response", "count": 1}]


def test_stream_error_in_tool_arguments_is_scanned_too() -> None:
    err = StreamError(502, "upstream died")
    out, _, _ = run("redact-pii", [ToolCallDelta(0, '{"to": "bob@example.co', "c", "mail"),
                                   err])
    args = "".join(e.arguments for e in out if isinstance(e, ToolCallDelta))
    assert args == '{"to": "[REDACTED:email]'
    assert out[-1] == err


def test_no_finish_flushes_at_end() -> None:
    out, _, _ = run("redact-pii", [TextDelta("hi bob@example.c"), TextDelta("om")])
    assert text_of(out) == "hi [REDACTED:email]"
