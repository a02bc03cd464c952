"""Offline token counting with tiktoken and the bundled ``o200k_base`` BPE file.

tiktoken normally downloads its BPE files; tollway ships OpenAI's ``o200k_base``
file (gzip, verified against tiktoken's published SHA-256) and builds the
encoding from it, so counting works on machines without internet. The encoding
is loaded lazily, on the first count (``await load()`` does it in a thread, off the
event loop), and kept for the life of the process: about 50 MB, so a process that
never needs an exact count never loads it.

``prompt_token_bound`` is the cheap alternative for admission: an upper bound of
``count_prompt_tokens`` from UTF-8 byte lengths (every o200k token is at least one
byte of the text it encodes), with no tokenizer at all.
"""

from __future__ import annotations

import asyncio
import binascii
import gc
import gzip
import hashlib
import threading
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

__all__ = [
    "count_messages",
    "count_prompt_tokens",
    "count_text",
    "encoding",
    "load",
    "loaded",
    "prompt_token_bound",
    "text_bound",
]

_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# The pre-tokenizer pattern of o200k_base, as in tiktoken_ext/openai_public.py.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

_SLICE_BYTES = 128 * 1024  # ≈ 7,000 ranks: a few ms of one GIL hold each
_lock = threading.Lock()
_encoding: Any = None

# OpenAI's chat format costs a few tokens per message and per reply.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3
_TOKENS_PER_IMAGE = 765  # a high-detail 512px tile estimate; images are not text


def encoding() -> Any:
    """The shared ``tiktoken.Encoding`` (loaded once, thread-safe)."""
    global _encoding
    if _encoding is None:
        with _lock:
            if _encoding is None:
                _encoding = _load()
    return _encoding


def _load() -> Any:
    import tiktoken

    raw = gzip.decompress(
        resources.files("tollway.data").joinpath("o200k_base.tiktoken.gz").read_bytes()
    )
    if hashlib.sha256(raw).hexdigest() != _O200K_SHA256:
        raise RuntimeError("bundled o200k_base.tiktoken does not match its published hash")
    # This runs in a worker thread while the event loop serves, and each piece of it
    # holds the GIL. The ranks are built by C-level iteration (map, zip, dict.update:
    # half the CPU of a comprehension) in slices of _SLICE_BYTES, so that the loop gets
    # the GIL back between them, and with the collector off, so that no collection walks
    # the half-built dict. tiktoken's Rust constructor is one more hold (≈ 130 ms here)
    # that cannot be sliced. The whole load: 350-406 → 301-323 ms of CPU.
    collecting = gc.isenabled()
    gc.disable()
    try:
        ranks: dict[bytes, int] = {}
        for piece in _pieces(raw, _SLICE_BYTES):
            fields = piece.split()  # "token rank" lines: tokens at even, ranks at odd places
            tokens, numbers = fields[0::2], fields[1::2]
            ranks.update(zip(map(binascii.a2b_base64, tokens), map(int, numbers), strict=True))
        enc = tiktoken.Encoding(
            name="o200k_base", pat_str=_O200K_PATTERN, mergeable_ranks=ranks,
            special_tokens=_SPECIAL,
        )  # fmt: skip
    finally:
        if collecting:
            gc.enable()
    # The Rust core keeps its own copy of the ranks; the Encoding also keeps this Python
    # dict (only for pickling, which tollway never does): ~28 MB of RSS. Let it go.
    if isinstance(getattr(enc, "_mergeable_ranks", None), dict):
        enc._mergeable_ranks = {}
    return enc


def _pieces(raw: bytes, size: int) -> Iterator[bytes]:
    """``raw`` cut into pieces of about ``size`` bytes, each ending at a line end."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start + size)
        end = len(raw) if end < 0 else end + 1
        yield raw[start:end]
        start = end


def loaded() -> bool:
    """Whether the encoding is in memory (a count would not have to load it)."""
    return _encoding is not None


async def load() -> Any:
    """The encoding, loaded in a worker thread if it is not yet (the load takes ~0.5 s
    of CPU, which must not stall the event loop)."""
    if _encoding is None:
        await asyncio.to_thread(encoding)
    return _encoding


def count_text(text: str) -> int:
    """Tokens in a piece of text (special-token strings count as text)."""
    if not text:
        return 0
    return len(encoding().encode(text, disallowed_special=()))


def text_bound(text: str) -> int:
    """An upper bound of ``count_text(text)``: its UTF-8 length in bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _content_tokens(content: Any, count: Callable[[str], int] = count_text) -> int:
    if isinstance(content, str):
        return count(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "refusal"):
                total += count(str(part.get(kind) or part.get("text") or ""))
            elif kind in ("image_url", "input_audio", "file"):
                total += _TOKENS_PER_IMAGE
    return total


def count_messages(messages: list[dict[str, Any]], count: Callable[[str], int] = count_text) -> int:
    """Prompt tokens of a chat conversation, in OpenAI's chat format (``count``: how a
    text is counted; ``text_bound`` makes the whole an upper bound)."""
    total = _TOKENS_PER_REPLY
    for msg in messages:
        total += _TOKENS_PER_MESSAGE
        total += _content_tokens(msg.get("content"), count)
        if msg.get("name"):
            total += count(str(msg["name"]))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += count(str(fn.get("name") or "")) + count(str(fn.get("arguments") or ""))
    return total


def count_prompt_tokens(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    """Prompt tokens of messages plus tool definitions (as JSON text)."""
    total = count_messages(messages)
    if tools:
        import orjson

        total += count_text(orjson.dumps(tools).decode())
    return total


def prompt_token_bound(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    """An upper bound of ``count_prompt_tokens(messages, tools)`` without the tokenizer.

    Exact structure, texts measured in UTF-8 bytes: a byte-level BPE token covers at
    least one byte, so no text has more tokens than bytes. A few microseconds, no
    memory; about 4× the real count on English text.
    """
    total = count_messages(messages, text_bound)
    if tools:
        import orjson

        total += len(orjson.dumps(tools))
    return total
