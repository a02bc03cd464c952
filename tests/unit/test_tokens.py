"""The offline tokenizer is OpenAI's o200k_base."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway import tokens


def test_known_token_ids() -> None:
    # ids as published for o200k_base (tiktoken)
    assert tokens.encoding().encode("Hello, world! This is tollway.") == [
        13225,
        11,
        2375,
        0,
        1328,
        382,
        29561,
        3499,
        13,
    ]


def test_counts() -> None:
    assert tokens.count_text("") == 0
    assert tokens.count_text("<|endoftext|>") > 1  # special tokens count as text
    one = tokens.count_messages([{"role": "user", "content": "hi"}])
    two = tokens.count_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert one == two == 3 + 3 + 1


_TEXT = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
    | st.sampled_from(["<|endoftext|>", "  \n\n", "1234567", "'re", "\u00e9\u0301", "\U0001f600"]),
    max_size=5,
).map("".join)
_PART = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, _TEXT),
    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
)
_CALL = st.builds(lambda n, a: {"id": "c", "type": "function",
                                "function": {"name": n, "arguments": a}}, _TEXT, _TEXT)  # fmt: skip
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]),
     "content": st.one_of(_TEXT, st.lists(_PART, max_size=3), st.none())},
    optional={"name": _TEXT, "tool_calls": st.lists(_CALL, max_size=2)},
)  # fmt: skip
_TOOLS = st.none() | st.lists(
    st.builds(lambda n, d: {"type": "function", "function": {"name": n, "description": d}},
              _TEXT, _TEXT), max_size=2)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_MESSAGE, max_size=4), tools=_TOOLS)
def test_prompt_token_bound_is_an_upper_bound(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> None:
    """Admission reserves against the bound: it may never be below the exact count."""
    assert tokens.prompt_token_bound(messages, tools) >= tokens.count_prompt_tokens(messages, tools)


def test_prompt_token_bound_is_exact_in_structure() -> None:
    msgs = [{"role": "user", "content": "héllo"}]  # 6 bytes; 3 per message + 3 per reply
    assert tokens.prompt_token_bound(msgs) == 3 + 3 + 6
    assert tokens.prompt_token_bound([]) == tokens.count_prompt_tokens([]) == 3


def test_the_loaded_encoding_counts_without_its_python_rank_table() -> None:
    """The Python copy of the ranks is dropped once the Rust core has its own."""
    enc = tokens.encoding()
    assert not getattr(enc, "_mergeable_ranks", None)
    assert enc.decode(enc.encode("Hello, world! This is tollway.")) == (
        "Hello, world! This is tollway."
    )
    assert tokens.loaded()


def test_every_rank_of_the_bundled_file_is_the_encodings() -> None:
    """The fast (C-level) parse of the BPE file gives every token its published rank."""
    import base64
    import gzip
    from importlib import resources

    raw = gzip.decompress(
        resources.files("tollway.data").joinpath("o200k_base.tiktoken.gz").read_bytes()
    )
    enc = tokens.encoding()
    lines = [line.split() for line in raw.splitlines() if line]
    assert len(lines) > 199_000
    for token, rank in lines:
        assert enc.decode_single_token_bytes(int(rank)) == base64.b64decode(token)


def test_loading_leaves_the_collector_as_it_was() -> None:
    """The load turns the collector off while it builds the ranks, and back on."""
    import gc

    saved, tokens._encoding = tokens._encoding, None
    try:
        assert gc.isenabled()
        tokens.encoding()
        assert gc.isenabled() and tokens.loaded()
        gc.disable()
        tokens._encoding = None
        tokens.encoding()
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
        tokens._encoding = saved
