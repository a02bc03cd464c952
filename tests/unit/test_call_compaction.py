"""A call's recorded output is compacted as it streams (text, not one string per
chunk), and no count changes: the budget check and the final usage see the same
numbers as without compaction, a long stream holds few pieces, and the joins copy a
stream's text a bounded number of times over, however long it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.calls import COMPACT_AT, CallRecord, next_compaction
from tollway.chunks import Event, Finish, TextDelta
from tollway.context import RequestContext
from tollway.pipeline.budget import metered_call
from tollway.pipeline.meter import usage_meter
from tollway.providers.base import ChatRequest


def _request() -> ChatRequest:
    return ChatRequest(body={}, model="m", stream=True, include_usage=True,
                       messages=[{"role": "user", "content": "hi"}])  # fmt: skip


_piece = st.text(st.sampled_from(list("ab 1.\n€é🙂")), min_size=1, max_size=6)
# (choice, text, then: 0 nothing, 1 a budget check, 2 compact that choice)
_steps = st.lists(st.tuples(st.integers(0, 2), _piece, st.integers(0, 2)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(_steps, st.integers(1, 60))
def test_compaction_changes_no_count(steps: list[tuple[int, str, int]], limit: int) -> None:
    plain, compacted = CallRecord(_request(), 5), CallRecord(_request(), 5)
    for record in (plain, compacted):
        record.limit = limit
        record.deployment = None
    seen = 0
    for choice, text, then in steps:
        seen += len(text.encode())
        for record in (plain, compacted):
            if choice == 0:
                record.pieces.append(text)
            else:
                record.add(choice, text)
        if then == 1:
            assert plain.over_limit(seen) == compacted.over_limit(seen)
        elif then == 2 and (choice == 0 or choice in compacted.more):
            compacted.compact(choice)
            texts = compacted.pieces if choice == 0 else compacted.more[choice]
            assert len(texts) <= 2
    assert plain.counted_output() == compacted.counted_output()
    assert plain.over_limit(seen) == compacted.over_limit(seen)
    for choice, texts in [(0, plain.pieces), *plain.more.items()]:
        other = compacted.pieces if choice == 0 else compacted.more[choice]
        assert "".join(texts) == "".join(other)


class _Budget:
    """A budget that lets the call run (limit far away) and records the call."""

    def __init__(self) -> None:
        self.call: CallRecord | None = None

    async def open_call(self, request: ChatRequest) -> CallRecord:
        self.call = CallRecord(request, 1)
        self.call.floor = 0
        return self.call

    def output_limit(self, call: CallRecord) -> int:
        return 10**9


def test_a_long_stream_holds_few_pieces() -> None:
    """10,000 chunks through the budget and the meter: both hold the text in a bounded
    number of strings, and what they counted is the whole text."""
    chunks = [f"w{i % 7} " for i in range(10_000)]

    async def upstream(_request: ChatRequest) -> AsyncIterator[Event]:
        for text in chunks:
            yield TextDelta(text, "content", 0)
        yield Finish("stop", 0)

    async def run() -> tuple[_Budget, RequestContext]:
        budget = _Budget()
        ctx = RequestContext(request_id="req_test")
        ctx.request = _request()
        events = metered_call(ctx.request, ctx, budget, upstream)  # type: ignore[arg-type]
        async for _ in usage_meter()(events, ctx):
            pass
        return budget, ctx

    budget, ctx = asyncio.run(run())
    assert budget.call is not None
    assert len(budget.call.pieces) <= next_compaction(len("".join(chunks)))
    assert "".join(budget.call.pieces) == "".join(chunks)
    assert ctx.usage is not None and ctx.usage.completion_tokens == budget.call.counted_output()


def _joins(chunks: int, piece: str) -> tuple[int, int]:
    """(characters copied by the joins, most pieces held) when ``chunks`` pieces stream
    through a call record as ``metered_call`` feeds it."""
    record = CallRecord(_request(), 1)
    compact_at, copied, held = COMPACT_AT, 0, 0
    for _ in range(chunks):
        record.pieces.append(piece)
        held = max(held, len(record.pieces))
        if len(record.pieces) >= compact_at:
            copied += sum(map(len, record.pieces))
            compact_at = record.compact(0)
    return copied, held


def test_joins_copy_a_long_stream_a_bounded_number_of_times() -> None:
    """Joining every fixed number of pieces copies the text joined so far each time: the
    work grows with the square of a stream's length. The count between joins grows
    with the text, so the copying per character stays bounded, and the pieces held
    stay a small share of the text (each is a string object of ≈ 50 bytes)."""
    for chunks in (1_000, 20_000, 200_000):
        copied, held = _joins(chunks, "tok ")
        text = 4 * chunks
        assert copied <= 70 * text, (chunks, copied / text)
        assert held <= max(COMPACT_AT, text // 256) + 1
    # the early joins are frequent: few pieces are held on a short answer
    assert _joins(500, "tok ")[1] == COMPACT_AT
    assert next_compaction(0) == COMPACT_AT


class _Counting(CallRecord):
    """A record that counts the characters its joins copy."""

    copied = 0

    def compact(self, choice: int) -> int:
        texts = self.pieces if choice == 0 else self.more[choice]
        self.copied += sum(map(len, texts))
        return super().compact(choice)


def test_other_choices_are_compacted_by_the_same_rule() -> None:
    """Choices other than 0 (``n`` > 1) go through ``add``: the same bound on pieces held
    and on copying, with part of the text counted (a budget check) or not."""
    for checked in (False, True):
        record = _Counting(_request(), 1)
        record.limit = 10**9
        pieces = 200_000
        for i in range(pieces):
            record.add(1, "tok ")
            if checked and i == 100:
                record.over_limit(4 * i)  # a counted boundary: joins keep both sides apart
        assert len(record.more[1]) <= next_compaction(4 * pieces) + 1
        assert record.copied <= 70 * 4 * pieces, record.copied / (4 * pieces)
        assert "".join(record.more[1]) == "tok " * pieces
