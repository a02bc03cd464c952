"""OpenAI chat request → Anthropic Messages request (used only by its adapter).

Mapping, field by field:

==========================  ==================================================
OpenAI                      Anthropic
==========================  ==================================================
system / developer msgs     ``system`` text blocks (hoisted, in order)
user / assistant content    text, ``image`` (data URL → base64 source, http(s)
                            URL → url source), PDF data URL → ``document``
assistant ``tool_calls``    ``tool_use`` blocks (arguments parsed as JSON)
``tool`` messages           ``tool_result`` blocks in a user turn
consecutive same-role turns merged into one turn
``tools`` (function)        ``{name, description, input_schema}``
``tool_choice``             auto → auto, none → none, required → any,
                            ``{"function": {"name"}}`` → tool
``parallel_tool_calls``     false → ``disable_parallel_tool_use``
``stop``                    ``stop_sequences``
max tokens                  ``max_tokens`` (required): the client's limit, else
                            the deployment's ``max_output_tokens``, else 4096
``reasoning_effort``        ``thinking.budget_tokens``, see ``THINKING_BUDGETS``
``temperature`` / ``top_p`` passed on (temperature clamped to Anthropic's 0..1);
                            dropped when thinking is on (Anthropic rejects them)
``user``                    ``metadata.user_id``
==========================  ==================================================

Thinking: the budget must be at least 1024 and below ``max_tokens``. When the
client set no limit, ``max_tokens`` becomes the default plus the budget (the
answer keeps its usual room); when it did, the budget is cut to fit under it,
and thinking is left off if fewer than 1024 tokens would remain for it.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.errors import InvalidRequest

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MIN_THINKING_BUDGET",
    "THINKING_BUDGETS",
    "build_messages_request",
    "translate_messages",
    "translate_tool_choice",
    "translate_tools",
]

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
}


def build_messages_request(
    body: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    model: str,
    max_output_tokens: int | None,
    deployment_max_tokens: int | None,
    stream: bool,
) -> dict[str, Any]:
    """The JSON body for ``POST /v1/messages``."""
    system, turns = translate_messages(messages)
    out: dict[str, Any] = {"model": model, "messages": turns}
    if system:
        out["system"] = system
    explicit = max_output_tokens or body.get("max_completion_tokens") or body.get("max_tokens")
    max_tokens = int(explicit or deployment_max_tokens or DEFAULT_MAX_TOKENS)
    budget = THINKING_BUDGETS.get(str(body.get("reasoning_effort") or "none"), 0)
    if budget:
        if explicit:
            budget = min(budget, max_tokens - 1)
        else:
            max_tokens += budget
    thinking = budget >= MIN_THINKING_BUDGET
    out["max_tokens"] = max_tokens
    if thinking:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        temperature = body.get("temperature")
        if temperature is not None:
            out["temperature"] = min(max(float(temperature), 0.0), 1.0)
        if body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if tools:
        out["tools"] = translate_tools(tools)
    choice = translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and (tools or choice["type"] == "none"):
        out["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if stream:
        out["stream"] = True
    return out


def translate_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages → (system blocks, Anthropic turns with same roles merged)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(b for b in _content_blocks(msg.get("content"), i) if b["type"] == "text")
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), i)
            anth_role = "user"
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"), i)
            for call in msg.get("tool_calls") or ():
                blocks.append(_tool_use_block(call, i))
            anth_role = "assistant"
        elif role in ("tool", "function"):
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": str(msg.get("tool_call_id") or msg.get("name") or ""),
            }
            content = _content_blocks(msg.get("content"), i)
            if content:
                result["content"] = content
            blocks = [result]
            anth_role = "user"
        else:
            raise InvalidRequest(f"messages[{i}].role: unsupported role {role!r}", param="messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == anth_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anth_role, "content": blocks})
    return system, turns


def _content_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages[{i}].content: expected a string or a list", param="messages"
        )
    blocks: list[dict[str, Any]] = []
    for part in content:
        block = _part_block(part, i)
        if block is None:
            continue
        if isinstance(part, dict) and "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _part_block(part: Any, i: int) -> dict[str, Any] | None:
    if isinstance(part, str):
        return {"type": "text", "text": part} if part else None
    if not isinstance(part, dict):
        raise InvalidRequest(f"messages[{i}].content: bad content part", param="messages")
    kind = part.get("type")
    if kind == "text":
        text = str(part.get("text") or "")
        return {"type": "text", "text": text} if text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "image", "source": _source(str(url or ""), i)}
    if kind == "file":
        data = (part.get("file") or {}).get("file_data")
        if isinstance(data, str) and data.startswith("data:"):
            return {"type": "document", "source": _source(data, i)}
        raise InvalidRequest(f"messages[{i}]: only inline (data URL) files are supported")
    if kind == "refusal":
        return None
    raise InvalidRequest(
        f"messages[{i}].content: part type {kind!r} is not supported by this model",
        param="messages",
    )


def _source(url: str, i: int) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise InvalidRequest(f"messages[{i}]: data URLs must be base64", param="messages")
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise InvalidRequest(f"messages[{i}]: unsupported image URL", param="messages")


def _tool_use_block(call: dict[str, Any], i: int) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"messages[{i}].tool_calls: arguments are not valid JSON", param="messages"
        ) from None
    if not isinstance(args, dict):
        args = {"value": args}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": args}


def translate_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools → Anthropic tool definitions."""
    out = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict):
            raise InvalidRequest("tools: only function tools are supported", param="tools")
        spec: dict[str, Any] = {
            "name": fn.get("name"),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append(spec)
    return out


def translate_tool_choice(choice: Any, parallel: Any = None) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` (+ ``parallel_tool_calls``) → Anthropic ``tool_choice``."""
    out: dict[str, Any]
    if choice is None:
        if parallel is False:
            return {"type": "auto", "disable_parallel_tool_use": True}
        return None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest(f"tool_choice: unsupported value {choice!r}", param="tool_choice")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out
