"""The offline tokenizer is OpenAI's o200k_base."""

from __future__ import annotations

from tollway import tokens


def test_known_token_ids() -> None:
    # ids as published for o200k_base (tiktoken)
    assert tokens.encoding().encode("Hello, world! This is tollway.") == [
        13225, 11, 2375, 0, 1328, 382, 29561, 3499, 13]


def test_counts() -> None:
    assert tokens.count_text("") == 0
    assert tokens.count_text("<|endoftext|>") > 1  # special tokens count as text
    one = tokens.count_messages([{"role": "user", "content": "hi"}])
    two = tokens.count_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert one == two == 3 + 3 + 1
