"""Non-streaming is the stream, collected into one ``chat.completion``.

Provider fields (``ProviderFields``) are kept: a response's and a choice's, the
later value winning; a message's, with strings joined and lists extended across
chunks (a streamed upstream's delta fields become the message's), the later value
winning otherwise. tollway's own fields always win.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    ProviderFields,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.errors import UpstreamError

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
    top: dict[str, Any] = {}
    on_choice: dict[int, dict[str, Any]] = {}
    on_message: dict[int, dict[str, Any]] = {}

    def choice(i: int) -> dict[str, Any]:
        if i not in choices:
            choices[i] = {
                "index": i,
                "message": {"role": "assistant", "content": None},
                "logprobs": None,
                "finish_reason": None,
            }
        return choices[i]

    async for event in events:
        if isinstance(event, TextDelta):
            c = choice(event.choice)
            texts.setdefault((event.choice, event.channel), []).append(event.text)
            if event.logprobs:
                merged = c["logprobs"] or {}
                for key, items in event.logprobs.items():
                    if items:
                        merged.setdefault(key, []).extend(items)
                c["logprobs"] = merged
        elif isinstance(event, ToolCallDelta):
            choice(event.choice)
            slot = calls.setdefault(event.choice, {}).setdefault(
                event.index,
                {
                    "id": None,
                    "type": "function",
                    "function": {"name": "", "arguments": ""},
                },
            )
            if event.id:
                slot["id"] = event.id
            if event.name:
                slot["function"]["name"] += event.name
            slot["function"]["arguments"] += event.arguments
        elif isinstance(event, PlatformToolRecord):
            msg = choice(event.choice)["message"]
            msg.setdefault("platform_tool_calls", []).append(platform_tool_json(event))
        elif isinstance(event, Finish):
            choice(event.choice)["finish_reason"] = event.reason
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Start):
            model = event.model or model
            fingerprint = event.system_fingerprint or fingerprint
            service_tier = event.service_tier or service_tier
        elif isinstance(event, ProviderFields):
            if event.chunk:
                top.update(event.chunk)
            if event.choice is not None:
                choice(event.choice)
                if event.on_choice:
                    on_choice.setdefault(event.choice, {}).update(event.on_choice)
                if event.on_delta:
                    _accumulate(on_message.setdefault(event.choice, {}), event.on_delta)
        elif isinstance(event, StreamError):  # the same error a stream would end with
            raise UpstreamError(
                event.message,
                status=event.status,
                code=event.code,
                type=event.type,
                param=event.param,
                retryable=False,
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
    for index, extra in on_message.items():
        choices[index]["message"] = {**extra, **choices[index]["message"]}
    for index, extra in on_choice.items():
        choices[index] = {**extra, **choices[index]}
    body: dict[str, Any] = {
        **top,
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


def _accumulate(into: dict[str, Any], delta: dict[str, Any]) -> None:
    """Fold one delta's provider fields into a message's."""
    for key, value in delta.items():
        mine = into.get(key)
        if isinstance(mine, str) and isinstance(value, str):
            into[key] = mine + value
        elif isinstance(mine, list) and isinstance(value, list):
            into[key] = mine + value
        else:
            into[key] = value
