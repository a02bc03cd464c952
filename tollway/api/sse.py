"""Events → OpenAI ``chat.completion.chunk`` SSE bytes, from the encoder's pieces (``encode.py``).

Each event becomes exactly ``data: <one-line JSON>\\n\\n``; the stream ends with
``data: [DONE]\\n\\n``, or after a single ``data: {"error": …}`` event. The
first delta of each choice carries ``role: "assistant"``; a tool call's
id/type/name appear only in its first fragment (adapters guarantee it).

Usage placement: with ``stream_options.include_usage`` it is OpenAI's exactly
(``"usage": null`` on every chunk, then a ``choices: []`` chunk); otherwise it
rides on the last chunk that carries ``finish_reason`` (unless turned off), so
that chunk is held until the usage is known — the only thing held back here.

Provider fields (``ProviderFields``: fields an upstream sent that tollway does not
model) ride on the next chunk of their choice, under tollway's own fields (which
win); a chunk's fields with no choice go out as a ``choices: []`` chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tollway.api.encode import (
    CHANNEL_FIELD,
    dumps,
    encode_error_event,
    platform_tool_json,
    usage_json,
    with_fields,
)
from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    ProviderBlock,
    ProviderFields,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "DONE",
    "encode_error_event",
    "platform_tool_json",
    "sse_stream",
    "usage_json",
    "with_fields",
]

DONE = b"data: [DONE]\n\n"


async def sse_stream(
    events: AsyncIterator[Event],
    *,
    response_id: str,
    created: int,
    model: str,
    include_usage: bool,
    usage_on_final_chunk: bool,
) -> AsyncIterator[bytes]:
    """Encode events as SSE bytes, one ``data:`` line per chunk, then ``[DONE]``."""
    head: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    usage_null = include_usage
    started: set[int] = set()
    finished: set[int] = set()
    pending_finish: dict[str, Any] | None = None  # the finish chunk awaiting usage
    usage: Usage | None = None
    fields: dict[int, ProviderFields] = {}  # provider fields awaiting their choice's chunk

    def chunk(choice: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if choice not in started:
            started.add(choice)
            delta = {"role": "assistant", **delta}
        body = {
            **head,
            "choices": [
                {"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if usage_null:
            body["usage"] = None
        if fields:
            extra = fields.pop(choice, None)
            if extra is not None:
                body = with_fields(body, extra)
        return body

    # The hot path: a plain text delta is spliced from pre-encoded bytes; the
    # result is byte-identical to dumps(chunk(...)).
    tail = b'},"logprobs":null,"finish_reason":null}]' + (
        b',"usage":null}\n\n' if usage_null else b"}\n\n"
    )

    def prefix() -> bytes:
        return b"data: " + dumps(head)[:-1] + b',"choices":[{"index":'

    text_prefix = prefix()
    field_keys = {ch: b',"delta":{"' + f.encode() + b'":' for ch, f in CHANNEL_FIELD.items()}

    async for event in events:
        if pending_finish is not None and not isinstance(event, Usage | ProviderFields):
            yield b"data: " + dumps(pending_finish) + b"\n\n"
            pending_finish = None
        if isinstance(event, TextDelta):
            if event.choice in started and event.logprobs is None and not fields:
                yield (
                    text_prefix
                    + str(event.choice).encode()
                    + field_keys[event.channel]
                    + dumps(event.text)
                    + tail
                )
                continue
            body = chunk(event.choice, {CHANNEL_FIELD[event.channel]: event.text})
            if event.logprobs is not None:
                body["choices"][0]["logprobs"] = event.logprobs
            yield b"data: " + dumps(body) + b"\n\n"
        elif isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.id is not None or event.name is not None:
                call["id"] = event.id
                call["type"] = "function"
                call["function"] = {"name": event.name or "", "arguments": event.arguments}
            else:
                call["function"] = {"arguments": event.arguments}
            yield b"data: " + dumps(chunk(event.choice, {"tool_calls": [call]})) + b"\n\n"
        elif isinstance(event, Finish):
            finished.add(event.choice)
            pending_finish = chunk(event.choice, {}, event.reason)
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Start):
            if event.model:
                head["model"] = event.model
            if event.system_fingerprint:
                head["system_fingerprint"] = event.system_fingerprint
            if event.service_tier:
                head["service_tier"] = event.service_tier
            text_prefix = prefix()
        elif isinstance(event, PlatformToolRecord):
            delta = {"platform_tool": platform_tool_json(event)}
            yield b"data: " + dumps(chunk(event.choice, delta)) + b"\n\n"
        elif isinstance(event, ProviderFields):
            if event.choice is None and pending_finish is not None:  # e.g. the usage chunk's
                pending_finish = {**(event.chunk or {}), **pending_finish}
            elif event.choice is None:  # a chunk's own fields, no choice: a chunk of its own
                body = {**(event.chunk or {}), **head, "choices": []}
                if usage_null:
                    body["usage"] = None
                yield b"data: " + dumps(body) + b"\n\n"
            else:
                held = fields.get(event.choice)
                fields[event.choice] = event if held is None else held.plus(event)
        elif isinstance(event, ProviderBlock):
            continue  # for the trace only
        elif isinstance(event, StreamError):
            fields.clear()
            yield encode_error_event(event)
            return
    for choice in sorted(fields):  # fields that came after their choice's last chunk
        if choice not in finished:
            continue  # its closing chunk below carries them
        if pending_finish is not None and pending_finish["choices"][0]["index"] == choice:
            pending_finish = with_fields(pending_finish, fields.pop(choice))
        else:
            yield b"data: " + dumps(chunk(choice, {})) + b"\n\n"
    for choice in sorted((started or {0}) - finished):  # the upstream never said: stop
        if pending_finish is not None:
            yield b"data: " + dumps(pending_finish) + b"\n\n"
        pending_finish = chunk(choice, {}, "stop")
    if pending_finish is not None:
        if usage is not None and usage_on_final_chunk and not include_usage:
            pending_finish["usage"] = usage_json(usage)
        yield b"data: " + dumps(pending_finish) + b"\n\n"
    if include_usage and usage is not None:
        yield b"data: " + dumps({**head, "choices": [], "usage": usage_json(usage)}) + b"\n\n"
    yield DONE
