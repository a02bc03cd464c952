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


# --- Bedrock -----------------------------------------------------------------------


def eventstream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` frame (string headers, both CRC32s)."""
    import binascii
    import struct

    raw_headers = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    head = prelude + struct.pack(">I", binascii.crc32(prelude))
    body = head + raw_headers + payload
    return body + struct.pack(">I", binascii.crc32(body))


def bedrock_event_frame(kind: str, obj: dict[str, Any]) -> bytes:
    return eventstream_frame({":event-type": kind, ":content-type": "application/json",
                              ":message-type": "event"}, json.dumps(obj).encode())


def bedrock_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Decoded ``(event type, payload)`` pairs of a recording (binary or JSON lines)."""
    if raw.startswith(b"{"):
        out = []
        for line in raw.splitlines():
            if line.strip():
                (kind, obj), = json.loads(line).items()
                out.append((kind, obj))
        return out
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(m.headers[":event-type"], json.loads(m.payload)) for m in buffer]


def bedrock_stream_bytes(raw: bytes) -> bytes:
    """The wire bytes of a recording: binary as recorded, JSON lines framed."""
    if not raw.startswith(b"{"):
        return raw
    return b"".join(bedrock_event_frame(k, o) for k, o in bedrock_events(raw))


_BEDROCK_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls",
                   "max_tokens": "length", "guardrail_intervened": "content_filter",
                   "content_filtered": "content_filter"}


def bedrock_expected(events: list[tuple[str, dict[str, Any]]], model: str) -> Expected:
    """Converse semantics: text and reasoning deltas, tool blocks, stop reason, usage."""
    exp = Expected(model=model)
    tools: dict[int, list[Any]] = {}
    for kind, obj in events:
        if kind == "contentBlockStart" and "toolUse" in obj.get("start", {}):
            tools[obj["contentBlockIndex"]] = [obj["start"]["toolUse"]["name"], ""]
        elif kind == "contentBlockDelta":
            delta = obj["delta"]
            exp.text += delta.get("text", "")
            exp.reasoning += delta.get("reasoningContent", {}).get("text", "")
            if "toolUse" in delta:
                tools[obj["contentBlockIndex"]][1] += delta["toolUse"]["input"]
        elif kind == "messageStop":
            exp.finish = _BEDROCK_FINISH[obj["stopReason"]]
        elif kind == "metadata":
            u = obj["usage"]
            read, write = u.get("cacheReadInputTokens", 0), u.get("cacheWriteInputTokens", 0)
            prompt = u["inputTokens"] + read + write
            assert prompt + u["outputTokens"] == u["totalTokens"]
            exp.usage = (prompt, u["outputTokens"], read, 0)
    exp.tools = [(name, json.loads(args or "{}")) for name, args in tools.values()]
    return exp


def bedrock_whole(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Fold ConverseStream events into the ``Converse`` response body."""
    blocks: dict[int, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for kind, obj in events:
        index = obj.get("contentBlockIndex", 0)
        if kind == "contentBlockStart" and "toolUse" in obj.get("start", {}):
            blocks[index] = {"toolUse": {**obj["start"]["toolUse"], "input": ""}}
        elif kind == "contentBlockDelta":
            delta = obj["delta"]
            if "text" in delta:
                blocks.setdefault(index, {"text": ""})["text"] += delta["text"]
            elif "reasoningContent" in delta:
                block = blocks.setdefault(index, {"reasoningContent": {"reasoningText": {
                    "text": "", "signature": ""}}})["reasoningContent"]["reasoningText"]
                block["text"] += delta["reasoningContent"].get("text", "")
                block["signature"] += delta["reasoningContent"].get("signature", "")
            elif "toolUse" in delta:
                blocks[index]["toolUse"]["input"] += delta["toolUse"]["input"]
        elif kind == "messageStop":
            out["stopReason"] = obj["stopReason"]
        elif kind == "metadata":
            out["usage"], out["metrics"] = obj["usage"], obj.get("metrics", {})
    for block in blocks.values():
        if "toolUse" in block:
            block["toolUse"]["input"] = json.loads(block["toolUse"]["input"] or "{}")
    out["output"] = {"message": {"role": "assistant",
                                 "content": [blocks[i] for i in sorted(blocks)]}}
    return out


# --- what an adapter produced -------------------------------------------------------


def summarize(events: list[Any]) -> Expected:
    """Fold an adapter's events (one Start, fragments merged by tool index)."""
    from tollway.chunks import Finish, Start, TextDelta, ToolCallDelta, Usage

    assert isinstance(events[0], Start)
    assert sum(isinstance(e, Start) for e in events) == 1
    got = Expected(model=events[0].model)
    calls: dict[int, list[Any]] = {}
    for e in events:
        if isinstance(e, TextDelta):
            if e.channel == "reasoning":
                got.reasoning += e.text
            else:
                got.text += e.text
        elif isinstance(e, ToolCallDelta):
            if e.index not in calls:
                assert e.id and e.name, "id and name come with a call's first fragment"
                calls[e.index] = [e.name, ""]
            else:
                assert e.id is None
            calls[e.index][1] += e.arguments
        elif isinstance(e, Finish):
            got.finish = e.reason
        elif isinstance(e, Usage):
            got.usage = (e.prompt_tokens, e.completion_tokens, e.cached_tokens,
                         e.reasoning_tokens)
    got.tools = [(name, json.loads(args)) for name, args in (calls[i] for i in sorted(calls))]
    return got


# --- OpenAI-compatible ----------------------------------------------------------------


def sse_data(raw: bytes) -> list[dict[str, Any]]:
    """The JSON ``data:`` payloads of an SSE body (``[DONE]`` left out)."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload and payload != b"[DONE]":
                    out.append(json.loads(payload))
    return out


def openai_expected(chunks: list[dict[str, Any]], fallback_model: str) -> Expected:
    exp = Expected(model=fallback_model)
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        exp.model = chunk.get("model") or exp.model
        usage = chunk.get("usage")
        if usage:
            exp.usage = (usage["prompt_tokens"], usage["completion_tokens"],
                         (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                         or usage.get("prompt_cache_hit_tokens") or 0,
                         (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
                         or 0)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            exp.text += delta.get("content") or ""
            exp.reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call.get("index", 0), ["", ""])
                fn = call.get("function") or {}
                slot[0] += fn.get("name") or ""
                slot[1] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                exp.finish = choice["finish_reason"]
    exp.tools = [(n, json.loads(a)) for n, a in (calls[i] for i in sorted(calls))]
    return exp


def openai_whole(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    exp = openai_expected(chunks, "")
    first = chunks[0]
    message: dict[str, Any] = {"role": "assistant", "content": exp.text or None}
    refusal = "".join((c.get("delta") or {}).get("refusal") or ""
                      for ch in chunks for c in ch.get("choices") or [])
    message["refusal"] = refusal or None
    if exp.reasoning:
        message["reasoning_content"] = exp.reasoning
    if exp.tools:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(exp.tools)]
    usage = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    return {"id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
            "model": exp.model, "choices": [{"index": 0, "message": message,
                                             "finish_reason": exp.finish}],
            **({"usage": usage} if usage else {})}


# --- Anthropic ---------------------------------------------------------------------------

_ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                     "max_tokens": "length", "tool_use": "tool_calls",
                     "refusal": "content_filter"}


# tollway's Anthropic adapter names a fallback block's "to" model as the served one.


def anthropic_expected(events: list[dict[str, Any]], fallback_model: str) -> Expected:
    exp = Expected(model=fallback_model)
    usage: dict[str, Any] = {}
    tools: dict[int, list[Any]] = {}
    for ev in events:
        kind = ev.get("type")
        if kind == "message_start":
            exp.model = ev["message"].get("model") or exp.model
            usage.update(ev["message"].get("usage") or {})
        elif (kind == "content_block_start"
              and ev["content_block"]["type"] == "fallback"):  # answered by the "to" model
            exp.model = ev["content_block"].get("to", {}).get("model") or exp.model
        elif kind == "content_block_start" and ev["content_block"]["type"] == "tool_use":
            block = ev["content_block"]
            tools[ev["index"]] = [block["name"], json.dumps(block["input"]) if block.get("input")
                                  else ""]
        elif kind == "content_block_delta":
            delta = ev["delta"]
            exp.text += delta.get("text", "") if delta["type"] == "text_delta" else ""
            exp.reasoning += delta.get("thinking", "") if delta["type"] == "thinking_delta" else ""
            if delta["type"] == "input_json_delta":
                tools[ev["index"]][1] += delta["partial_json"]
        elif kind == "message_delta":
            usage.update(ev.get("usage") or {})
            if ev["delta"].get("stop_reason"):
                exp.finish = _ANTHROPIC_FINISH.get(ev["delta"]["stop_reason"], "stop")
    exp.tools = [(n, json.loads(a or "{}")) for n, a in (tools[i] for i in sorted(tools))]
    if usage:
        read = usage.get("cache_read_input_tokens") or 0
        prompt = usage.get("input_tokens", 0) + read + (usage.get("cache_creation_input_tokens")
                                                        or 0)
        exp.usage = (prompt, usage.get("output_tokens", 0), read,
                     (usage.get("output_tokens_details") or {}).get("thinking_tokens", 0))
    return exp


def anthropic_whole(events: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for ev in events:
        kind = ev.get("type")
        if kind == "message_start":
            message = dict(ev["message"])
            message["usage"] = dict(message.get("usage") or {})
        elif kind == "content_block_start":
            blocks[ev["index"]] = dict(ev["content_block"])
            if blocks[ev["index"]]["type"] == "tool_use":
                blocks[ev["index"]]["_json"] = ""
        elif kind == "content_block_delta":
            block, delta = blocks[ev["index"]], ev["delta"]
            if delta["type"] == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif delta["type"] == "input_json_delta":
                block["_json"] += delta["partial_json"]
        elif kind == "message_delta":
            message["stop_reason"] = ev["delta"].get("stop_reason")
            message["usage"].update(ev.get("usage") or {})
    for block in blocks.values():
        if "_json" in block:
            raw = block.pop("_json")
            block["input"] = json.loads(raw) if raw else block.get("input") or {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    if not message["usage"]:
        del message["usage"]
    return message
