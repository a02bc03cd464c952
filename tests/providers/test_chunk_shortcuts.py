"""The shortcuts for the usual streamed chunk give exactly what the general path gives.

``events_from_chunk`` turns a chunk of one choice's plain content into its one event
without the general walk, and ``SSEDecoder.decode`` takes a read of exactly one one-line
event without buffering; for any chunk and any bytes, the result must be the general
path's. The strategies stay close to the usual shapes (where the shortcuts apply or
just miss) and vary what makes them miss: extra fields, a finish, log probabilities,
usage, a role, a second choice, content that is not a string, line ends, pieces.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.errors import UpstreamError
from tollway.providers.openai_compat import events_from_chunk, events_of_any_chunk
from tollway.providers.sse_decoder import SSEDecoder

_TEXT = st.text(max_size=6)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), _TEXT,
                   st.just({"x": 1}), st.just([]))  # fmt: skip


def _usual(content: str, index: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "system_fingerprint": None,
            "choices": [{"index": index, "delta": {"content": content}, "logprobs": None,
                         "finish_reason": None}]}  # fmt: skip


def _set(path: tuple[Any, ...], value: Any) -> Any:
    """A change to the usual chunk: set ``value`` at ``path`` (if the path is still there)."""

    def change(chunk: dict[str, Any]) -> None:
        target: Any = chunk
        for step in path[:-1]:
            try:
                target = target[step]
            except (KeyError, IndexError, TypeError):
                return
        last = path[-1]
        if isinstance(target, dict) and isinstance(last, str):
            target[last] = value
        elif isinstance(target, list) and isinstance(last, int) and last < len(target):
            target[last] = value

    return change


_DELTA = ("choices", 0, "delta")
_CHOICE = ("choices", 0)
_changes = st.one_of(
    st.builds(_set, st.just(("usage",)), st.one_of(st.none(), st.just({"prompt_tokens": 1}))),
    st.builds(_set, st.sampled_from([("extra_top",), ("service_tier",), ("obfuscation",),
                                     ("error",), ("system_fingerprint",)]), _VALUE),
    st.builds(_set, st.just((*_CHOICE, "finish_reason")),
              st.one_of(st.none(), st.sampled_from(["stop", "length", ""]))),
    st.builds(_set, st.just((*_CHOICE, "logprobs")),
              st.one_of(st.none(), st.just({"content": []}), st.just(True))),
    st.builds(_set, st.sampled_from([(*_CHOICE, "extra"), (*_CHOICE, "index"),
                                     (*_CHOICE, "delta"), ("choices",), _CHOICE]), _VALUE),
    st.builds(_set, st.sampled_from([(*_DELTA, "role"), (*_DELTA, "refusal"),
                                     (*_DELTA, "reasoning_content"), (*_DELTA, "reasoning"),
                                     (*_DELTA, "content"), (*_DELTA, "annotations")]), _VALUE),
    st.builds(_set, st.just((*_DELTA, "tool_calls")), st.just([{"index": 0}])),
    st.builds(lambda extra: lambda chunk: chunk.get("choices", []).append(extra)
              if isinstance(chunk.get("choices"), list) else None,
              st.just({"index": 1, "delta": {"content": "b"}})),
)  # fmt: skip


@st.composite
def _chunk(draw: Any) -> dict[str, Any]:
    """The usual chunk with none, one or a few changes."""
    chunk = _usual(draw(_TEXT), draw(st.one_of(st.integers(0, 2), st.none())))
    for change in draw(st.lists(_changes, max_size=3)):
        change(chunk)
    return chunk


def _outcome(f: Any, chunk: dict[str, Any]) -> Any:
    try:
        return f(chunk)
    except UpstreamError as exc:
        return ("error", exc.status, exc.message)
    except (AttributeError, TypeError) as exc:  # a malformed chunk: the same failure
        return ("crash", type(exc))


@settings(max_examples=600)
@given(_chunk())
def test_the_usual_chunk_shortcut_gives_the_general_events(chunk: dict[str, Any]) -> None:
    assert _outcome(events_from_chunk, chunk) == _outcome(events_of_any_chunk, chunk)


def test_the_shortcut_takes_the_usual_chunk() -> None:
    chunk = orjson.loads(
        b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"system_fingerprint":null,"choices":[{"index":1,"delta":{"content":"tok "},'
        b'"logprobs":null,"finish_reason":null}]}'
    )
    assert events_from_chunk(chunk) == events_of_any_chunk(chunk)
    assert len(events_from_chunk(chunk)) == 1


_line = st.one_of(
    st.builds(lambda t: b"data: " + t.encode(), st.text(max_size=6)),
    st.builds(lambda t: b"data: " + t.encode(), st.text("a\r\né", max_size=4)),
    st.sampled_from([b"data:x", b"event: e", b": note", b"id: 1", b"data: [DONE]", b""]),
)
_event = st.lists(_line, min_size=1, max_size=3)
_end = st.sampled_from([b"\n", b"\r\n", b"\r"])


def _decode_pieces(pieces: list[bytes]) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    out = []
    for piece in pieces:
        out += decoder.decode(piece)
    return out + decoder.flush()


@settings(max_examples=500)
@given(st.lists(st.tuples(_event, _end), max_size=6))
def test_a_read_of_one_whole_event_decodes_as_the_general_path(
    events: list[tuple[list[bytes], bytes]],
) -> None:
    """Each read one event (the shortcut's case, or one it must refuse: a line end inside
    the text, a second line, ``\\r``), against the same bytes read one at a time (which
    the shortcut never takes)."""
    pieces = [end.join(lines) + end + end for lines, end in events]
    data = b"".join(pieces)
    assert _decode_pieces(pieces) == _decode_pieces([data[i:i + 1] for i in range(len(data))])


_PIECE = st.sampled_from([b"data: ", b"data:", b"x", b"\xc3\xa9", b"\n", b"\r", b"\n\n",
                          b": c", b"event: e"])  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.lists(_PIECE, max_size=6).map(b"".join), max_size=6))
def test_any_reads_decode_as_one_byte_at_a_time(reads: list[bytes]) -> None:
    """Reads that end mid-event, hold a line end in a data line or a bare ``\\r``, or
    follow a held partial event: the shortcut must leave each to the general path."""
    data = b"".join(reads)
    try:
        whole = _decode_pieces([data[i:i + 1] for i in range(len(data))])
    except UnicodeDecodeError:  # a split character: the same error either way
        return
    assert _decode_pieces(reads) == whole


def test_a_read_ending_one_byte_into_the_next_line_waits_for_it() -> None:
    assert _decode_pieces([b"data: x\nd", b"ata: y\n\n"]) == [("", "x\ny")]
    assert _decode_pieces([b"data: x\n\n", b"data: y\r\n\r\n"]) == [("", "x"), ("", "y")]
