"""Tollway's events → Anthropic Messages SSE events or one ``message`` object.

Two modes, chosen by what arrives:

* **verbatim** (an Anthropic deployment, nothing changed the content): the
  upstream's events come as ``Raw`` and are written as they are, unknown event
  and block types included. The upstream's ``message_delta`` is held to the end
  and gets tollway's cost (``usage.tollway_cost``); if the stream was cut (budget)
  the open blocks are closed and a ``message_delta`` with ``max_tokens`` is made.
* **translated** (any other upstream, or a firewall that may change content):
  ``message_start`` (usage: the upstream's prompt figures when it gave them), a
  ``ping``, then one content block per run of text (``text``), reasoning
  (``thinking``), tool call (``tool_use``, arguments as ``input_json_delta``) or
  platform tool (a ``server_tool_use`` block and a ``platform_tool_result`` block),
  indexes from 0 (an upstream thinking signature that a firewall kept ends the
  thinking block it belongs to); ``message_delta`` with the stop reason (stop → end_turn,
  length → max_tokens, tool_calls → tool_use, content_filter → refusal) and the
  whole usage; ``message_stop``. An error after the commit point is one ``error``
  event and the end.

Usage in Anthropic's terms: ``input_tokens`` (neither cache reads nor writes),
``cache_creation_input_tokens`` with ``cache_creation`` (5m / 1h tiers),
``cache_read_input_tokens``, ``output_tokens`` (thinking included), and
``tollway_cost`` = ``{base_cost_usd, platform_fee_usd, total_cost_usd}`` (the
ledger entry's figures) when billing is on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.api.encode import dumps
from tollway.api.messages.errors import error_event
from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    Raw,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.errors import UpstreamError

__all__ = ["STOP_REASONS", "anthropic_usage", "collect_message", "message_sse"]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_BLOCK_OF = {"content": "text", "refusal": "text", "reasoning": "thinking"}


def anthropic_usage(usage: Usage | None, *, with_cost: bool = True) -> dict[str, Any]:
    """Tollway usage → Anthropic's usage object (plus ``tollway_cost``)."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    reads, writes = usage.cached_tokens, usage.cache_write_tokens
    out: dict[str, Any] = {
        "input_tokens": max(usage.prompt_tokens - reads - writes, 0),
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": reads,
        "output_tokens": usage.output_tokens,
    }
    if writes:
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": writes - usage.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        }
    if with_cost:
        _add_cost(out, usage)
    return out


def _add_cost(out: dict[str, Any], usage: Usage | None) -> None:
    if usage is not None and usage.cost:
        out["tollway_cost"] = dict(usage.cost)
    if usage is not None and usage.estimated:
        out["tollway_estimated"] = True


class _Builder:
    """Translated mode: the Anthropic events (name, object) the tollway events imply."""

    def __init__(self, message_id: str, model: str) -> None:
        self.id = message_id
        self.model = model
        self.start_usage: Usage | None = None
        self.started = False
        self.next_index = 0
        self.open: tuple[str, int] | None = None  # (block key, index) of the open block
        self.tools: dict[int, int] = {}  # tool call index -> block index
        self.stop: str | None = None
        self.platform = 0
        self.signed: dict[str, Any] | None = None  # a thinking signature to place

    def head(self) -> list[tuple[str, dict[str, Any]]]:
        self.started = True
        usage = anthropic_usage(self.start_usage, with_cost=False)
        message: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]

    def _open(self, key: str, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = self.close()
        index = self.next_index
        self.next_index += 1
        self.open = (key, index)
        out.append(("content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block}))
        return out

    def close(self) -> list[tuple[str, dict[str, Any]]]:
        if self.open is None:
            return []
        key, index = self.open
        self.open = None
        out: list[tuple[str, dict[str, Any]]] = []
        if key == "thinking" and self.signed is not None:
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": self.signed}))
            self.signed = None
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        return out

    def text(self, event: TextDelta) -> list[tuple[str, dict[str, Any]]]:
        kind = _BLOCK_OF[event.channel]
        out: list[tuple[str, dict[str, Any]]] = []
        if self.open is None or self.open[0] != kind:
            block: dict[str, Any] = (
                {"type": "text", "text": ""} if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            out = self._open(kind, block)
        assert self.open is not None
        delta = ({"type": "text_delta", "text": event.text} if kind == "text"
                 else {"type": "thinking_delta", "thinking": event.text})
        out.append(("content_block_delta",
                    {"type": "content_block_delta", "index": self.open[1], "delta": delta}))
        return out

    def tool(self, event: ToolCallDelta) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        index = self.tools.get(event.index)
        if index is None:
            block = {"type": "tool_use", "id": event.id or f"toolu_tw_{event.index}",
                     "name": event.name or "", "input": {}}
            out = self._open(f"tool:{event.index}", block)
            index = self.tools[event.index] = self.next_index - 1
        if event.arguments:
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            out.append(("content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta}))
        return out

    def platform_tool(self, record: PlatformToolRecord) -> list[tuple[str, dict[str, Any]]]:
        self.platform += 1
        tool_id = f"srvtoolu_tw_{self.platform}"
        try:
            arguments = orjson.loads(record.arguments or "{}")
        except orjson.JSONDecodeError:
            arguments = {"arguments": record.arguments}
        use = {"type": "server_tool_use", "id": tool_id, "name": record.name, "input": arguments}
        result: dict[str, Any] = {"type": "platform_tool_result", "tool_use_id": tool_id,
                                  "is_error": record.error is not None,
                                  "content": record.error if record.error is not None
                                  else record.result,
                                  "duration_ms": round(record.duration_ms, 3)}
        out = self._open("platform", use)
        out += self._open("platform", result)
        return out + self.close()

    def signature(self, raw: Raw) -> list[tuple[str, dict[str, Any]]]:
        """Keep an upstream ``signature_delta`` for the thinking block that closes next
        (text a firewall held back may still be on its way)."""
        if raw.detail == "signature_delta":
            delta = _raw_json(raw).get("delta")
            if isinstance(delta, dict):
                self.signed = delta
        return []

    def tail(self, usage: Usage | None) -> list[tuple[str, dict[str, Any]]]:
        out = self.close()
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": self.stop or "end_turn", "stop_sequence": None},
                 "usage": anthropic_usage(usage)}
        return [*out, ("message_delta", delta), ("message_stop", {"type": "message_stop"})]


def _sse(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


def _delta_prefix(key: str, index: int) -> bytes:
    """The bytes of a text or thinking delta event up to its text (byte-identical to
    ``_sse`` of the same event)."""
    field = "text" if key == "text" else "thinking"
    return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
            + str(index).encode() + b',"delta":{"type":"' + field.encode() + b'_delta","'
            + field.encode() + b'":')


def _raw_json(raw: Raw) -> dict[str, Any]:
    data = raw.data
    at = data.find(b"data: ")
    parsed = orjson.loads(data[at + 6 :] if at >= 0 else data)
    return parsed if isinstance(parsed, dict) else {}


async def message_sse(
    events: AsyncIterator[Event], *, message_id: str, model: str
) -> AsyncIterator[bytes]:
    """Encode events as Anthropic SSE bytes (see the module docstring)."""
    b = _Builder(message_id, model)
    verbatim = False
    held_delta: Raw | None = None
    held_stop: Raw | None = None
    open_raw: set[int] = set()
    usage: Usage | None = None
    prefix_for: tuple[str, int] | None = None
    prefix = b""
    async for event in events:
        kind = type(event)
        if kind is Raw:
            assert isinstance(event, Raw)
            if not verbatim and (b.started or event.kind != "message_start"):
                # a stage rewrote the content and kept only what carries no text
                for name, obj in b.signature(event):
                    yield _sse(name, obj)
                continue
            verbatim = True
            raw_kind = event.kind
            if raw_kind == "message_delta":
                held_delta = event
            elif raw_kind == "message_stop":
                held_stop = event
            else:
                if raw_kind == "content_block_start":
                    open_raw.add(event.index)
                elif raw_kind == "content_block_stop":
                    open_raw.discard(event.index)
                yield event.data
            continue
        if kind is Usage:
            usage = event  # type: ignore[assignment]
            continue
        if kind is Finish:
            b.stop = STOP_REASONS.get(event.reason, "end_turn")  # type: ignore[union-attr]
            continue
        if kind is StreamError:
            assert isinstance(event, StreamError)
            if not verbatim and not b.started:
                for name, obj in b.head():
                    yield _sse(name, obj)
            yield _sse("error", error_event(event))
            return
        if verbatim:
            continue  # the normalized twin of an event already passed on
        if kind is Start:
            assert isinstance(event, Start)
            b.model = event.model or b.model
            b.start_usage = event.usage or b.start_usage
            continue
        if kind is TextDelta and b.open is not None:  # the hot path: a delta of the open block
            assert isinstance(event, TextDelta)
            key, index = b.open
            if key == _BLOCK_OF[event.channel]:
                if prefix_for != b.open:
                    prefix_for, prefix = b.open, _delta_prefix(key, index)
                yield prefix + dumps(event.text) + b"}}\n\n"
                continue
        out: list[tuple[str, dict[str, Any]]] = [] if b.started else b.head()
        if kind is TextDelta:
            out += b.text(event)  # type: ignore[arg-type]
        elif kind is ToolCallDelta:
            out += b.tool(event)  # type: ignore[arg-type]
        elif kind is PlatformToolRecord:
            out += b.platform_tool(event)  # type: ignore[arg-type]
        for name, obj in out:
            yield _sse(name, obj)
    if not verbatim:
        out = [] if b.started else b.head()
        for name, obj in out + b.tail(usage):
            yield _sse(name, obj)
        return
    for index in sorted(open_raw):  # cut short (budget): close what is open
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    if held_delta is not None and not open_raw:
        obj = _raw_json(held_delta)
        if usage is not None and usage.cost:
            upstream_usage: dict[str, Any] = (
                obj["usage"] if isinstance(obj.get("usage"), dict) else {})
            obj["usage"] = {**upstream_usage}
            _add_cost(obj["usage"], usage)
            yield _sse("message_delta", obj)
        else:
            yield held_delta.data
    else:
        yield _sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": b.stop or "max_tokens", "stop_sequence": None},
            "usage": anthropic_usage(usage),
        })
    if held_stop is not None:
        yield held_stop.data
    else:
        yield _sse("message_stop", {"type": "message_stop"})


async def collect_message(
    events: AsyncIterator[Event], *, message_id: str, model: str
) -> dict[str, Any]:
    """A non-streamed answer: the upstream's own message (verbatim mode, with
    ``usage.tollway_cost``) or one built from the events."""
    raw_message: dict[str, Any] | None = None
    content: list[dict[str, Any]] = []
    args: dict[int, list[str]] = {}
    usage: Usage | None = None
    stop: str | None = None
    current: dict[str, Any] | None = None
    b = _Builder(message_id, model)
    async for event in events:
        if isinstance(event, Raw):
            if event.kind == "message":
                raw_message = orjson.loads(event.data)
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Finish):
            stop = STOP_REASONS.get(event.reason, "end_turn")
        elif isinstance(event, StreamError):
            raise UpstreamError(event.message, status=event.status, code=event.code,
                                type=event.type, retryable=False)
        elif raw_message is not None:
            continue
        elif isinstance(event, Start):
            b.model = event.model or b.model
        elif isinstance(event, TextDelta):
            kind = _BLOCK_OF[event.channel]
            if current is None or current["type"] != kind:
                current = ({"type": "text", "text": ""} if kind == "text"
                           else {"type": "thinking", "thinking": "", "signature": ""})
                content.append(current)
            current[kind] += event.text
        elif isinstance(event, ToolCallDelta):
            if event.index not in args:
                current = {"type": "tool_use", "id": event.id or f"toolu_tw_{event.index}",
                           "name": event.name or "", "input": {}}
                content.append(current)
                args[event.index] = []
            args[event.index].append(event.arguments)
        elif isinstance(event, PlatformToolRecord):
            for _name, obj in b.platform_tool(event):
                if _name == "content_block_start":
                    content.append(obj["content_block"])
            current = None
    if raw_message is not None:
        if usage is not None and isinstance(raw_message.get("usage"), dict):
            _add_cost(raw_message["usage"], usage)
        return raw_message
    tool_blocks = [c for c in content if c["type"] == "tool_use"]
    for block, (_index, parts) in zip(tool_blocks, sorted(args.items()), strict=False):
        text = "".join(parts)
        try:
            block["input"] = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            block["input"] = {"arguments": text}
    return {"id": message_id, "type": "message", "role": "assistant", "model": b.model,
            "content": content, "stop_reason": stop or "end_turn", "stop_sequence": None,
            "usage": anthropic_usage(usage)}
