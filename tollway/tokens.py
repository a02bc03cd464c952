"""Offline token counting with tiktoken and the bundled ``o200k_base`` BPE file.

tiktoken normally downloads its BPE files; tollway ships OpenAI's ``o200k_base``
file (gzip, verified against tiktoken's published SHA-256) and builds the
encoding from it, so counting works on machines without internet. The encoding
is loaded lazily, on the first count, and kept for the life of the process.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from importlib import resources
from typing import Any

__all__ = ["count_messages", "count_prompt_tokens", "count_text", "encoding"]

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
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in raw.splitlines() if line)
    }
    return tiktoken.Encoding(
        name="o200k_base", pat_str=_O200K_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL
    )


def count_text(text: str) -> int:
    """Tokens in a piece of text (special-token strings count as text)."""
    if not text:
        return 0
    return len(encoding().encode(text, disallowed_special=()))


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_text(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "refusal"):
                total += count_text(str(part.get(kind) or part.get("text") or ""))
            elif kind in ("image_url", "input_audio", "file"):
                total += _TOKENS_PER_IMAGE
    return total


def count_messages(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat conversation, in OpenAI's chat format."""
    total = _TOKENS_PER_REPLY
    for msg in messages:
        total += _TOKENS_PER_MESSAGE
        total += _content_tokens(msg.get("content"))
        if msg.get("name"):
            total += count_text(str(msg["name"]))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += count_text(str(fn.get("name") or "")) + count_text(
                str(fn.get("arguments") or "")
            )
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
