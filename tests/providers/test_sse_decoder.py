"""The incremental SSE parser, fed every possible split of real recordings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.schemas import CONFORMANCE
from tollway.providers.sse_decoder import SSEDecoder

RECORDING = (CONFORMANCE / "streams" / "openai" / "openai-python-tool-call-single.sse").read_bytes()
ANTHROPIC = (CONFORMANCE / "streams" / "anthropic" / "docs-tool-use.sse").read_bytes()


def _decode(data: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    out = []
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.decode(data[start:cut])
        start = cut
    out += decoder.decode(data[start:])
    return out + decoder.flush()


def test_whole_recording() -> None:
    events = _decode(RECORDING, [])
    assert events[-1] == ("", "[DONE]")
    assert all(name == "" for name, _ in events)


def test_event_names_and_multiline_data() -> None:
    data = b"event: a\ndata: 1\ndata: 2\n\n: comment\nid: 7\nretry: 5\ndata: x\n\n"
    assert _decode(data, []) == [("a", "1\n2"), ("", "x")]


def test_crlf_and_cr_line_ends_and_unterminated_tail() -> None:
    data = b"data: a\r\n\r\ndata: b\r\rdata: c"
    assert _decode(data, [8, 9]) == [("", "a"), ("", "b"), ("", "c")]


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=len(RECORDING)), max_size=30))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    assert _decode(RECORDING, cuts) == _decode(RECORDING, [])


@settings(max_examples=100)
@given(st.lists(st.integers(min_value=0, max_value=len(ANTHROPIC)), max_size=30))
def test_any_split_of_crlf_stream(cuts: list[int]) -> None:
    crlf = ANTHROPIC.replace(b"\n", b"\r\n")
    assert _decode(crlf, cuts) == _decode(ANTHROPIC, [])
