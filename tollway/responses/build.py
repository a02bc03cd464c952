"""Typed chat events → Responses API events and the whole ``response`` object.

``ResponseBuilder.feed(event)`` returns the Responses events (dicts, each with a
``sequence_number`` one above the last) that the chat event produces: output items
open as their first delta arrives (a ``message`` with an ``output_text`` part, a
``reasoning`` item with a summary part, a ``function_call`` per tool call) and close
(``...done`` events) when another item opens or the response ends. ``finish()``
closes what is open and returns ``response.completed`` (``response.incomplete`` when
the output cap cut the answer, ``response.failed`` after an upstream error), whose
``response`` carries ``usage`` with ``input_tokens``, ``output_tokens``, details and
tollway's cost figures (those of the ledger entry).
"""

from __future__ import annotations

import time
from typing import Any

from tollway.api.encode import dumps
from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.ids import random_hex

__all__ = ["ResponseBuilder", "usage_of"]


def _id(prefix: str) -> str:
    return prefix + random_hex(12)


def usage_of(usage: Usage) -> dict[str, Any]:
    """The Responses API usage object (plus tollway's cost figures and flags)."""
    out: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
    if usage.estimated:
        out["estimated"] = True
    if usage.cost:
        out.update(usage.cost)
    return out


class ResponseBuilder:
    """One response's state while its events are translated."""

    def __init__(self, request: dict[str, Any], response_id: str, model: str) -> None:
        self.id = response_id
        self.created_at = int(time.time())
        self.model = model
        self.request = request
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item deltas go to
        self.calls: dict[int, dict[str, Any]] = {}  # tool call index → its item
        self.usage: Usage | None = None
        self.reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.store = request.get("store") is not False
        self.previous_response_id = request.get("previous_response_id")

    # -- events -----------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``."""
        snapshot = self.response("in_progress")
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]  # fmt: skip

    def feed(self, event: Event) -> list[dict[str, Any]]:
        kind = type(event)
        if kind is TextDelta:
            return self._text(event)  # type: ignore[arg-type]
        if kind is ToolCallDelta:
            return self._tool(event)  # type: ignore[arg-type]
        if kind is PlatformToolRecord:
            return self._platform_tool(event)  # type: ignore[arg-type]
        if kind is Finish:
            if event.choice == 0:  # type: ignore[union-attr]
                self.reason = event.reason  # type: ignore[union-attr]
        elif kind is Usage:
            self.usage = event  # type: ignore[assignment]
        elif kind is StreamError:
            self.error = {"code": event.code or "server_error",  # type: ignore[union-attr]
                          "message": event.message}  # type: ignore[union-attr]
        return []

    def _text(self, event: TextDelta) -> list[dict[str, Any]]:
        if event.choice:
            return []
        out: list[dict[str, Any]] = []
        reasoning = event.channel == "reasoning"
        want = "reasoning" if reasoning else "message"
        item = self.open
        if item is None or item["type"] != want:
            out += self._close()
            item = self._open_item(want, out)
        index = len(self.output) - 1
        if reasoning:
            item["summary"][0]["text"] += event.text
            out.append(self._event("response.reasoning_summary_text.delta", item_id=item["id"],
                                   output_index=index, summary_index=0, delta=event.text))
        else:
            part = item["content"][0]
            if event.channel == "refusal":
                part["type"] = "refusal"
                part["refusal"] = part.pop("text", "") + event.text
                out.append(self._event("response.refusal.delta", item_id=item["id"],
                                       output_index=index, content_index=0, delta=event.text))
            else:
                part["text"] += event.text
                out.append(self._event("response.output_text.delta", item_id=item["id"],
                                       output_index=index, content_index=0, delta=event.text,
                                       logprobs=[]))  # fmt: skip
        return out

    def _open_item(self, kind: str, out: list[dict[str, Any]]) -> dict[str, Any]:
        if kind == "reasoning":
            item: dict[str, Any] = {"id": _id("rs_"), "type": "reasoning", "summary": []}
        else:
            item = {"id": _id("msg_"), "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}  # fmt: skip
        self.output.append(item)
        index = len(self.output) - 1
        out.append(self._event("response.output_item.added", output_index=index,
                               item=_copy(item)))  # fmt: skip
        if kind == "reasoning":
            item["summary"].append({"type": "summary_text", "text": ""})
            out.append(self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                   output_index=index, summary_index=0,
                                   part={"type": "summary_text", "text": ""}))  # fmt: skip
        else:
            item["content"].append({"type": "output_text", "annotations": [], "logprobs": [],
                                    "text": ""})  # fmt: skip
            out.append(self._event("response.content_part.added", item_id=item["id"],
                                   output_index=index, content_index=0,
                                   part={"type": "output_text", "annotations": [], "text": ""}))
        self.open = item
        return item

    def _tool(self, event: ToolCallDelta) -> list[dict[str, Any]]:
        if event.choice:
            return []
        out: list[dict[str, Any]] = []
        item = self.calls.get(event.index)
        if item is None or item is not self.open:
            if item is None:
                out += self._close()
                item = {"id": _id("fc_"), "type": "function_call", "status": "in_progress",
                        "arguments": "", "call_id": event.id or _id("call_"),
                        "name": event.name or ""}  # fmt: skip
                self.calls[event.index] = item
                self.output.append(item)
                out.append(self._event("response.output_item.added",
                                       output_index=len(self.output) - 1, item=_copy(item)))
                self.open = item
        elif event.name and not item["name"]:
            item["name"] = event.name
        if event.arguments:
            item["arguments"] += event.arguments
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=self.output.index(item),
                                   delta=event.arguments))  # fmt: skip
        return out

    def _platform_tool(self, record: PlatformToolRecord) -> list[dict[str, Any]]:
        """A platform tool tollway ran inside the response: an ``mcp_call`` item (a call the
        server made, which a client never runs itself), added and done at once."""
        if record.choice:
            return []
        out = self._close()
        result = record.result
        item = {"id": _id("mcp_"), "type": "mcp_call", "server_label": "tollway",
                "name": record.name, "arguments": record.arguments, "output": None,
                "error": None, "status": "in_progress"}  # fmt: skip
        self.output.append(item)
        index = len(self.output) - 1
        out.append(self._event("response.output_item.added", output_index=index,
                               item=dict(item)))  # fmt: skip
        item["output"] = result if isinstance(result, str) or result is None else (
            dumps(result).decode())
        item["error"] = record.error
        item["status"] = "failed" if record.error else "completed"
        out.append(self._event("response.output_item.done", output_index=index,
                               item=dict(item)))  # fmt: skip
        return out

    def _close(self) -> list[dict[str, Any]]:
        item = self.open
        if item is None:
            return []
        self.open = None
        index = self.output.index(item)
        out: list[dict[str, Any]] = []
        if item["type"] == "message":
            part = item["content"][0]
            if part["type"] == "output_text":
                out.append(self._event("response.output_text.done", item_id=item["id"],
                                       output_index=index, content_index=0, text=part["text"],
                                       logprobs=[]))  # fmt: skip
            else:
                out.append(self._event("response.refusal.done", item_id=item["id"],
                                       output_index=index, content_index=0,
                                       refusal=part["refusal"]))  # fmt: skip
            out.append(self._event("response.content_part.done", item_id=item["id"],
                                   output_index=index, content_index=0, part=dict(part)))
            item["status"] = "completed"
        elif item["type"] == "reasoning":
            summary = item["summary"][0]
            out.append(self._event("response.reasoning_summary_text.done", item_id=item["id"],
                                   output_index=index, summary_index=0, text=summary["text"]))
            out.append(self._event("response.reasoning_summary_part.done", item_id=item["id"],
                                   output_index=index, summary_index=0, part=dict(summary)))
        else:
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                   output_index=index, arguments=item["arguments"]))
            item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=index,
                               item=_copy(item)))  # fmt: skip
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Close what is open; the final ``response.completed`` / ``incomplete`` / ``failed``."""
        out = self._close()
        if self.error is not None:
            return [*out, self._event("response.failed", response=self.response("failed"))]
        if self.reason == "length":
            return [*out, self._event("response.incomplete",
                                      response=self.response("incomplete"))]  # fmt: skip
        return [*out, self._event("response.completed", response=self.response("completed"))]

    # -- the response object ------------------------------------------------------------
    def response(self, status: str) -> dict[str, Any]:
        request = self.request
        done = status != "in_progress"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": self.error if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "model": self.model,
            "output": [_copy(i) for i in self.output] if done else [],
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": self.previous_response_id,
            "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
            "store": self.store,
            "temperature": request.get("temperature", 1.0),
            "text": request.get("text") or {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools") or [],
            "top_p": request.get("top_p", 1.0),
            "truncation": request.get("truncation") or "disabled",
            "usage": usage_of(self.usage) if done and self.usage is not None else None,
            "user": request.get("user"),
            "metadata": request.get("metadata") or {},
        }

    def output_text(self) -> str:
        return "".join(p.get("text", "") for i in self.output if i["type"] == "message"
                       for p in i["content"])  # fmt: skip


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    for key in ("content", "summary"):
        if key in out:
            out[key] = [dict(p) for p in out[key]]
    return out
