"""Validation of a Messages API request body (``/v1/messages`` and ``count_tokens``).

Checks what Anthropic checks before it generates: the types and bounds of the
known fields and the known content blocks. Fields and block types it does not
know pass untouched (Anthropic adds them often; the upstream judges them). A
bad field is an ``InvalidRequest`` whose message names it (``messages.0.content``).
"""

from __future__ import annotations

from typing import Any

from tollway.bounds import INT64_MAX, MAX_JSON_DEPTH, MAX_TOKENS
from tollway.errors import InvalidRequest
from tollway.wire.openai import deep_path

__all__ = ["validate_messages"]

_ROLES = ("user", "assistant")
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_THINKING = ("enabled", "disabled", "adaptive")


def _bad(path: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {why}", param=path, code="invalid_value")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def validate_messages(body: Any, raw: bytes | None = None, *, count_tokens: bool = False) -> None:
    """Raise ``InvalidRequest`` naming the first bad field of a Messages body."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if raw is None or raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        path = deep_path(body, MAX_JSON_DEPTH)
        if path is not None:
            where = ".".join(str(p) for p in path[:6])
            raise _bad(where, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        if not count_tokens:
            raise _bad("max_tokens", "Field required")
    elif not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS:
        raise _bad("max_tokens", f"must be an integer from 1 to {MAX_TOKENS}")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages", "Field required (a list of messages)")
    for i, msg in enumerate(messages):
        _message(msg, f"messages.{i}")
    _system(body.get("system"))
    for name, high in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None and (not _is_number(value) or not 0 <= value <= high):
            raise _bad(name, f"must be a number from 0 to {high:g}")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or not 0 <= top_k <= INT64_MAX):
        raise _bad("top_k", "must be a non-negative integer")
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise _bad("stop_sequences", "must be a list of strings")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("stream", "must be a boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata", "must be an object")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise _bad("metadata.user_id", "must be a string")
    _tools(body.get("tools"), body.get("tool_choice"))
    _thinking(body.get("thinking"), max_tokens)


def _message(msg: Any, path: str) -> None:
    if not isinstance(msg, dict):
        raise _bad(path, "must be an object with role and content")
    if msg.get("role") not in _ROLES:
        raise _bad(f"{path}.role", "must be 'user' or 'assistant'")
    content = msg.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(f"{path}.content", "must be a string or a list of content blocks")
    for j, block in enumerate(content):
        _block(block, f"{path}.content.{j}")


def _block(block: Any, path: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _bad(path, "must be a content block object with a 'type'")
    kind = block["type"]
    if kind == "text":
        _str(block, "text", path)
    elif kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict) or not isinstance(source.get("type"), str):
            raise _bad(f"{path}.source", "Field required (an object with a 'type')")
    elif kind == "tool_use":
        _str(block, "id", path)
        _str(block, "name", path)
        if not isinstance(block.get("input"), dict):
            raise _bad(f"{path}.input", "must be an object")
    elif kind == "tool_result":
        _str(block, "tool_use_id", path)
        content = block.get("content")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                _block(inner, f"{path}.content.{k}")
        elif content is not None and not isinstance(content, str):
            raise _bad(f"{path}.content", "must be a string or a list of content blocks")
    elif kind == "thinking":
        _str(block, "thinking", path)
    cache = block.get("cache_control")
    if cache is not None and not isinstance(cache, dict):
        raise _bad(f"{path}.cache_control", "must be an object")


def _str(block: dict[str, Any], name: str, path: str) -> None:
    if not isinstance(block.get(name), str):
        raise _bad(f"{path}.{name}", "Field required (a string)")


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _bad("system", "must be a string or a list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"system.{i}", "must be a text block")
        _block(block, f"system.{i}")


def _tools(tools: Any, choice: Any) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", "must be a list of tools")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _bad(f"tools.{i}.name", "Field required (a string)")
            schema = tool.get("input_schema")
            if schema is not None and not isinstance(schema, dict):
                raise _bad(f"tools.{i}.input_schema", "must be an object")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise _bad("tool_choice.type", "must be one of auto, any, tool, none")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise _bad("tool_choice.name", "Field required (a string)")


def _thinking(thinking: Any, max_tokens: Any) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in _THINKING:
        raise _bad("thinking.type", "must be one of enabled, disabled, adaptive")
    if thinking["type"] != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        raise _bad("thinking.budget_tokens", "must be an integer of at least 1024")
    if _is_int(max_tokens) and budget >= max_tokens:
        raise _bad("thinking.budget_tokens", "must be less than max_tokens")
