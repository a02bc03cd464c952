"""Non-streaming is the stream, collected into one ``chat.completion``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.errors import GatewayError

__all__ = ["collect"]

_FIELD = {"content": "content", "reasoning": "reasoning_content", "refusal": "refusal"}


async def collect(
    events: AsyncIterator[Event], *, response_id: str, created: int, fallback_model: str
) -> dict[str, Any]:
    """Drain ``events`` into a ``chat.completion`` dict (``usage`` as a Usage object)."""
    from tollway.api.sse import platform_tool_json, usage_json

    choices: dict[int, dict[str, Any]] = {}
    texts: dict[tuple[int, str], list[str]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    model = fallback_model
    fingerprint: str | None = None
    service_tier: str | None = None
    usage: Usage | None = None

    def choice(i: int) -> dict[str, Any]:
        if i not in choices:
            choices[i] = {"index": i, "message": {"role": "assistant", "content": None},
                          "logprobs": None, "finish_reason": None}
        return choices[i]

    async for event in events:
        kind = type(event)
        if kind is TextDelta:
            c = choice(event.choice)  # type: ignore[union-attr]
            texts.setdefault((event.choice, event.channel), []).append(event.text)  # type: ignore[union-attr]
            if event.logprobs:  # type: ignore[union-attr]
                merged = c["logprobs"] or {}
                for key, items in event.logprobs.items():  # type: ignore[union-attr]
                    if items:
                        merged.setdefault(key, []).extend(items)
                c["logprobs"] = merged
        elif kind is ToolCallDelta:
            choice(event.choice)  # type: ignore[union-attr]
            slot = calls.setdefault(event.choice, {}).setdefault(  # type: ignore[union-attr]
                event.index, {"id": None, "type": "function",  # type: ignore[union-attr]
                              "function": {"name": "", "arguments": ""}})
            if event.id:  # type: ignore[union-attr]
                slot["id"] = event.id  # type: ignore[union-attr]
            if event.name:  # type: ignore[union-attr]
                slot["function"]["name"] += event.name  # type: ignore[union-attr]
            slot["function"]["arguments"] += event.arguments  # type: ignore[union-attr]
        elif kind is PlatformToolRecord:
            msg = choice(event.choice)["message"]  # type: ignore[union-attr]
            msg.setdefault("platform_tool_calls", []).append(platform_tool_json(event))  # type: ignore[arg-type]
        elif kind is Finish:
            choice(event.choice)["finish_reason"] = event.reason  # type: ignore[union-attr]
        elif kind is Usage:
            usage = event  # type: ignore[assignment]
        elif kind is Start:
            model = event.model or model  # type: ignore[union-attr]
            fingerprint = event.system_fingerprint or fingerprint  # type: ignore[union-attr]
            service_tier = event.service_tier or service_tier  # type: ignore[union-attr]
        elif kind is StreamError:
            raise GatewayError(
                event.message, status=event.status, code=event.code  # type: ignore[union-attr]
            )

    for (index, channel), parts in texts.items():
        choices[index]["message"][_FIELD[channel]] = "".join(parts)
    for index, by_index in calls.items():
        choices[index]["message"]["tool_calls"] = [by_index[i] for i in sorted(by_index)]
    if not choices:
        choice(0)["finish_reason"] = "stop"
    for c in choices.values():
        c["message"].setdefault("refusal", None)
        if c["finish_reason"] is None:
            c["finish_reason"] = "stop"
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choices[i] for i in sorted(choices)],
    }
    if fingerprint:
        body["system_fingerprint"] = fingerprint
    if service_tier:
        body["service_tier"] = service_tier
    if usage is not None:
        body["usage"] = usage_json(usage)
    return body
