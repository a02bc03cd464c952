"""``/openapi.json`` entries of the Messages API: request and answer schemas, and errors in
Anthropic's envelope (``AnthropicError``). Looser than ``validate.py``, never stricter: what
the document calls invalid, the validation refuses."""

from __future__ import annotations

from typing import Any

from tollway.plugins.docs import INT, NSTR, STR, Operation, obj, ref

__all__ = ["COUNT_TOKENS", "MESSAGES"]

_MODEL = ref("ModelAlias")
_SCHEMAS: dict[str, Any] = {
    "AnthropicError": obj(["type", "error"], {
        "type": {"const": "error"},
        "error": obj(["type", "message"], {"type": STR, "message": STR}),
    }, extra=False),
    "MessagesRequest": obj(["model", "max_tokens", "messages"], {
        "model": _MODEL,
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "messages": {"type": "array", "items": obj(["role", "content"], {
            "role": {"enum": ["user", "assistant"]},
            "content": {"anyOf": [STR, {"type": "array", "items": obj(["type"], {
                "type": STR})}]},
        })},
        # optional fields: null is the same as absent
        "system": {"anyOf": [NSTR, {"type": "array", "items": obj(["type", "text"], {
            "type": {"const": "text"}, "text": STR})}]},
        "stream": {"type": ["boolean", "null"]},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "top_k": {"type": ["integer", "null"], "minimum": 0},
        "stop_sequences": {"type": ["array", "null"], "items": STR},
        "metadata": {"anyOf": [{"type": "null"}, obj([], {"user_id": NSTR})]},
        "tools": {"type": ["array", "null"], "items": obj(["name"], {"name": STR})},
        "tool_choice": {"anyOf": [{"type": "null"}, obj(["type"], {
            "type": {"enum": ["auto", "any", "tool", "none"]}})]},
        "thinking": {"anyOf": [{"type": "null"}, obj(["type"], {
            "type": {"enum": ["enabled", "disabled", "adaptive"]}})]},
    }),
    "CountTokensRequest": obj(["model", "messages"], {
        "model": _MODEL, "messages": {"type": "array", "items": {"type": "object"}}}),
    "Message": obj(["id", "type", "role", "model", "content", "stop_reason", "usage"], {
        "id": STR, "type": {"const": "message"}, "role": {"const": "assistant"},
        "model": STR, "content": {"type": "array", "items": {"type": "object"}},
        "stop_reason": NSTR, "usage": {"type": "object"},
    }),
    "MessageTokensCount": obj(["input_tokens"], {"input_tokens": INT}),
    # one server-sent event of a streamed message: its name (message_start,
    # content_block_start / _delta / _stop, message_delta, message_stop, ping, error, or
    # an event a passed-through upstream added) and a JSON object that names its type
    "MessageStreamEvent": obj(["event", "data"], {
        "event": STR,
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": obj(["type"], {"type": STR})},
    }, extra=False),
}  # fmt: skip

MESSAGES = Operation(
    "Create a message (Anthropic's Messages API; errors in Anthropic's envelope)", "messages",
    {200: {"content": {"application/json": {"schema": ref("Message")},
                       "text/event-stream": {"schema": ref("MessageStreamEvent")}}}},
    errors=(402, 404, 502, 504, 529), body="MessagesRequest", body_required=True,
    schemas=_SCHEMAS, error_schema="AnthropicError",
)
COUNT_TOKENS = Operation(
    "Count a Messages request's input tokens", "messages", {200: ref("MessageTokensCount")},
    errors=(404,), body="CountTokensRequest", body_required=True, schemas=_SCHEMAS,
    error_schema="AnthropicError",
)
