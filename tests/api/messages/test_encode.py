"""The Messages encoder over any event sequence: well-formed blocks, nothing lost or added."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.api.messages.support import sse_events
from tollway.api.messages.encode import collect_message, message_sse
from tollway.chunks import Event, Finish, Start, TextDelta, ToolCallDelta, Usage

PIECES = st.lists(st.one_of(
    st.tuples(st.sampled_from(["content", "reasoning", "refusal"]), st.text(min_size=1)),
    st.tuples(st.just("tool"), st.integers(0, 2), st.text(alphabet="{}\":ab1 ", max_size=6)),
), max_size=25)


def _events(pieces: list[Any]) -> list[Event]:
    out: list[Event] = [Start("served-model")]
    seen: set[int] = set()
    for piece in pieces:
        if piece[0] == "tool":
            _, index, args = piece
            first = index not in seen
            seen.add(index)
            out.append(ToolCallDelta(index, args, id=f"call_{index}" if first else None,
                                     name="fn" if first else None))
        else:
            out.append(TextDelta(piece[1], piece[0]))
    return [*out, Finish("stop"), Usage(7, 9)]


async def _feed(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


async def _encode(events: list[Event]) -> bytes:
    return b"".join([b async for b in message_sse(_feed(events), message_id="msg_1",
                                                  model="alias")])


@settings(max_examples=examples(200), deadline=None)
@given(pieces=PIECES)
def test_blocks_are_well_formed_and_hold_every_piece(pieces: list[Any]) -> None:
    events = _events(pieces)
    raw = asyncio.run(_encode(events))
    parsed = [(name, json.loads(data)) for name, data in sse_events(raw)]
    names = [n for n, _ in parsed]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert parsed[0][1]["message"]["model"] == "served-model"
    blocks: dict[int, dict[str, Any]] = {}
    open_index = None
    for name, obj in parsed[2:-2]:
        if name == "content_block_start":
            assert open_index is None and obj["index"] == len(blocks)
            open_index = obj["index"]
            blocks[open_index] = {**obj["content_block"], "_json": ""}
        elif name == "content_block_delta":
            block, delta = blocks[obj["index"]], obj["delta"]
            if delta["type"] == "input_json_delta":
                block["_json"] += delta["partial_json"]
            else:
                assert obj["index"] == open_index
                field = "text" if delta["type"] == "text_delta" else "thinking"
                block[field] += delta[field]
        else:
            assert name == "content_block_stop" and obj["index"] == open_index
            open_index = None
    assert open_index is None
    texts = "".join(b.get("text", "") for b in blocks.values())
    thinking = "".join(b.get("thinking", "") for b in blocks.values())
    assert texts == "".join(p[1] for p in pieces if p[0] in ("content", "refusal"))
    assert thinking == "".join(p[1] for p in pieces if p[0] == "reasoning")
    tool_args = {b["id"]: b["_json"] for b in blocks.values() if b["type"] == "tool_use"}
    for index in {p[1] for p in pieces if p[0] == "tool"}:
        assert tool_args[f"call_{index}"] == "".join(p[2] for p in pieces
                                                     if p[0] == "tool" and p[1] == index)
    assert parsed[-2][1]["usage"]["output_tokens"] == 9

    whole = asyncio.run(collect_message(_feed(events), message_id="msg_1", model="alias"))
    assert "".join(b.get("text", "") for b in whole["content"]) == texts
    assert "".join(b.get("thinking", "") for b in whole["content"]) == thinking
    assert whole["usage"]["input_tokens"] == 7 and whole["stop_reason"] == "end_turn"
