"""Reading recorded provider answers: what a client should end up with, per provider.

Each ``*_expected`` reads a recording the way its provider's documentation
describes it, independently of tollway's adapter, and returns an ``Expected``;
each ``*_whole`` folds a recorded stream into the body the same provider sends
for the non-streaming call, so one recording drives both modes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.schemas import CONFORMANCE

__all__ = [
    "CONFORMANCE",
    "Expected",
    "gemini_chunks",
    "gemini_expected",
    "gemini_whole",
]


@dataclass
class Expected:
    """What a client should receive: text, reasoning, tool calls, finish, usage."""

    model: str
    text: str = ""
    reasoning: str = ""
    tools: list[tuple[str, Any]] = field(default_factory=list)  # (name, parsed arguments)
    finish: str | None = None
    # (prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens) or None
    usage: tuple[int, int, int, int] | None = None


# --- Gemini ------------------------------------------------------------------------


def gemini_chunks(raw: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a ``streamGenerateContent?alt=sse`` body (CRLF framing)."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        block = block.strip()
        if block.startswith(b"data:"):
            out.append(json.loads(block[5:]))
    return out


_GEMINI_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                    "IMAGE_SAFETY"}


def gemini_expected(objs: list[dict[str, Any]], fallback_model: str) -> Expected:
    """Gemini's documented semantics: thoughts are reasoning, thinking tokens are output."""
    exp = Expected(model=fallback_model)
    usage: dict[str, Any] | None = None
    for obj in objs:
        exp.model = obj.get("modelVersion") or exp.model
        usage = obj.get("usageMetadata") or usage
        if obj.get("promptFeedback", {}).get("blockReason") and not obj.get("candidates"):
            exp.finish = "content_filter"
        for cand in obj.get("candidates") or []:
            for part in (cand.get("content") or {}).get("parts") or []:
                if part.get("thought"):
                    exp.reasoning += part.get("text") or ""
                elif "text" in part:
                    exp.text += part["text"]
                elif "functionCall" in part:
                    call = part["functionCall"]
                    exp.tools.append((call["name"], call.get("args") or {}))
            reason = cand.get("finishReason")
            if reason:
                exp.finish = ("length" if reason == "MAX_TOKENS" else
                              "content_filter" if reason in _GEMINI_FILTERED else
                              "tool_calls" if exp.tools else "stop")
    if usage is not None:
        thoughts = usage.get("thoughtsTokenCount", 0)
        prompt = usage.get("promptTokenCount", 0) + usage.get("toolUsePromptTokenCount", 0)
        completion = usage.get("candidatesTokenCount", 0) + thoughts
        assert prompt + completion == usage.get("totalTokenCount", prompt + completion)
        exp.usage = (prompt, completion, usage.get("cachedContentTokenCount", 0), thoughts)
    return exp


def gemini_whole(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold stream chunks into one ``generateContent`` response (parts concatenated)."""
    whole: dict[str, Any] = {}
    parts: list[dict[str, Any]] = []
    candidate: dict[str, Any] = {}
    for obj in objs:
        for key in ("modelVersion", "responseId", "usageMetadata", "promptFeedback"):
            if key in obj:
                whole[key] = obj[key]
        for cand in obj.get("candidates") or []:
            candidate.update({k: v for k, v in cand.items() if k != "content"})
            for part in (cand.get("content") or {}).get("parts") or []:
                last = parts[-1] if parts else None
                if (last is not None and "text" in part and "text" in last
                        and bool(part.get("thought")) == bool(last.get("thought"))):
                    last["text"] += part["text"]
                else:
                    parts.append(dict(part))
    if candidate or parts:
        candidate["content"] = {"role": "model", "parts": parts}
        whole["candidates"] = [candidate]
    return whole


def read(path: Path) -> bytes:
    return path.read_bytes()
