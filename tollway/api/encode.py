"""The one OpenAI encoder: the JSON of usage, platform tools, provider fields and errors
that both modes share, and the whole ``chat.completion`` (non-streaming is the stream,
collected). ``api/sse.py`` streams the same pieces as ``chat.completion.chunk`` SSE.

Provider fields (``ProviderFields``) are kept: a response's and a choice's, the
later value winning; a message's, with strings joined and lists extended across
chunks (a streamed upstream's delta fields become the message's), the later value
winning otherwise. tollway's own fields always win.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson

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

__all__ = [
    "CHANNEL_FIELD",
    "collect",
    "dumps",
    "encode_error_event",
    "platform_tool_json",
    "usage_json",
    "with_fields",
]


CHANNEL_FIELD = {"content": "content", "reasoning": "reasoning_content", "refusal": "refusal"}


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return float(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    """orjson with Decimal support (money renders as the exact decimal figure)."""
    return orjson.dumps(obj, default=_default)


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object with the provider's own figures, plus tollway's cost and flags.

    ``total_tokens`` is the provider's when it reported one (a provider that counts
    reasoning outside ``completion_tokens`` reports a larger total). Cache writes,
    when there are any, are shown beside cache reads in ``prompt_tokens_details``.
    """
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    extra = usage.extra
    details = extra.get("prompt_tokens_details")
    if details is not None or usage.cached_tokens or usage.cache_write_tokens:
        out["prompt_tokens_details"] = {
            **(details if isinstance(details, dict) else {}),
            "cached_tokens": usage.cached_tokens,
        }
        if usage.cache_write_tokens:
            out["prompt_tokens_details"]["cache_write_tokens"] = usage.cache_write_tokens
            if usage.cache_write_1h_tokens:
                out["prompt_tokens_details"]["cache_write_1h_tokens"] = (
                    usage.cache_write_1h_tokens
                )
    details = extra.get("completion_tokens_details")
    if details is not None or usage.reasoning_tokens:
        out["completion_tokens_details"] = {
            **(details if isinstance(details, dict) else {}),
            "reasoning_tokens": usage.reasoning_tokens,
        }
    if usage.estimated:
        out["estimated"] = True
    if usage.cost:
        out.update(usage.cost)
    return out


def platform_tool_json(record: PlatformToolRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"name": record.name, "arguments": record.arguments}
    if record.error is not None:
        out["error"] = record.error
    else:
        out["result"] = record.result
    out["duration_ms"] = round(record.duration_ms, 3)
    return out


def with_fields(body: dict[str, Any], extra: ProviderFields) -> dict[str, Any]:
    """A one-choice chunk with the provider's fields added under tollway's own."""
    if extra.chunk:
        body = {**extra.chunk, **body}
    if extra.on_choice or extra.on_delta:
        choice = body["choices"][0]
        if extra.on_delta:
            choice["delta"] = {**extra.on_delta, **choice["delta"]}
        if extra.on_choice:
            body["choices"] = [{**extra.on_choice, **choice}]
    return body


def encode_error_event(error: StreamError) -> bytes:
    body = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    return b"data: " + dumps(body) + b"\n\n"


async def collect(
    events: AsyncIterator[Event], *, response_id: str, created: int, fallback_model: str
) -> dict[str, Any]:
    """Drain ``events`` into a ``chat.completion`` dict (``usage`` as a Usage object)."""
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
        choices[index]["message"][CHANNEL_FIELD[channel]] = "".join(parts)
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
