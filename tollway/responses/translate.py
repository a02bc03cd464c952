"""A Responses API request (``POST /v1/responses``) as a chat-completions body.

``instructions`` become a system message; ``input`` (a string, or items: messages with
text or image parts, ``function_call``, ``function_call_output``) becomes ``messages``;
function tools and ``tool_choice`` their chat forms; ``max_output_tokens`` the output
cap; ``text.format`` (``json_schema``, ``json_object``) ``response_format``;
``reasoning.effort`` ``reasoning_effort``. Built-in OpenAI tools have no chat form: a
request naming any is refused with a 400 that names them. Reasoning items of earlier
turns are dropped (their encrypted content only means something to OpenAI).
"""

from __future__ import annotations

from typing import Any

from tollway.errors import InvalidRequest
from tollway.providers.base import EXTENSION_FIELDS

__all__ = ["chat_body", "input_items"]

_PASSED = ("temperature", "top_p", "user", "parallel_tool_calls", "service_tier",
           "top_logprobs", "safety_identifier", "prompt_cache_key")  # fmt: skip
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def input_items(body: Any) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _bad("'input' is required: a string or a non-empty array of input items.",
                   "input", "missing_required_parameter" if value is None else "invalid_value")
    return value


def chat_body(body: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body for a Responses request whose conversation is ``items``
    (earlier responses' items, then its input); raises ``InvalidRequest``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required and must be a string.", "model",
                   "missing_required_parameter")  # fmt: skip
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("'instructions' must be a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(items))
    out: dict[str, Any] = {"model": model, "messages": messages}
    tools = body.get("tools")
    if tools is not None:
        translated = _tools(tools)
        if translated:
            out["tools"] = translated
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    cap = body.get("max_output_tokens")
    if cap is not None:
        if type(cap) is not int or cap < 1:
            raise _bad("'max_output_tokens' must be a positive integer.", "max_output_tokens")
        out["max_completion_tokens"] = cap
    fmt = _format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise _bad("'reasoning' must be an object.", "reasoning")
        if reasoning.get("effort") is not None:
            out["reasoning_effort"] = reasoning["effort"]
    for name in (*_PASSED, *EXTENSION_FIELDS):  # tollway's own (firewall, …) as for chat
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("'stream' must be a boolean.", "stream")
    return out


def _messages(value: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"'{param}' must be an object.", param)
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
            if role is None:
                raise _bad(f"'{param}.role' must be user, assistant, system or developer.",
                           f"{param}.role")  # fmt: skip
            out.append({"role": role, "content": _content(item.get("content"), param)})
        elif kind == "function_call":
            call = {"id": _str(item, "call_id", param), "type": "function",
                    "function": {"name": _str(item, "name", param),
                                 "arguments": _str(item, "arguments", param, empty=True)}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = _content(output, param)
            if not isinstance(output, str | list):
                raise _bad(f"'{param}.output' must be a string.", f"{param}.output")
            out.append({"role": "tool", "tool_call_id": _str(item, "call_id", param),
                        "content": output})  # fmt: skip
        elif kind == "reasoning":
            continue
        else:
            raise _bad(f"Input items of type {kind!r} are not supported by tollway's "
                       "translation to chat completions.", f"{param}.type")  # fmt: skip
    return out


def _str(item: dict[str, Any], key: str, param: str, empty: bool = False) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (not value and not empty):
        raise _bad(f"'{param}.{key}' must be a string.", f"{param}.{key}")
    return value


def _content(value: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _bad(f"'{param}.content' must be a string or an array of parts.",
                   f"{param}.content")  # fmt: skip
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(value):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal"):
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise _bad(f"'{where}.text' must be a string.", f"{where}.text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(f"'{where}': parts of type {kind!r} are not supported by tollway's "
                       "translation to chat completions.", where)  # fmt: skip
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad("'tools' must be an array.", "tools")
    out: list[dict[str, Any]] = []
    builtin: list[str] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise _bad(f"'tools[{i}]' must be an object.", f"tools[{i}]")
        if tool.get("type") != "function":
            builtin.append(str(tool.get("type")))
            continue
        function: dict[str, Any] = {"name": _str(tool, "name", f"tools[{i}]")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    if builtin:
        names = ", ".join(sorted(set(builtin)))
        raise _bad(f"Built-in tools cannot be translated to chat completions for this model: "
                   f"{names}. Use function tools, or a deployment that speaks the Responses "
                   "API.", "tools", "unsupported_tool")  # fmt: skip
    return out


def _tool_choice(value: Any) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(
        value.get("name"), str
    ):
        return {"type": "function", "function": {"name": value["name"]}}
    raise _bad("'tool_choice' must be auto, none, required or a function tool.", "tool_choice")


def _format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _bad("'text' must be an object.", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        if not isinstance(schema.get("name"), str) or not isinstance(schema.get("schema"), dict):
            raise _bad("'text.format' json_schema needs 'name' and 'schema'.", "text.format")
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("'text.format.type' must be text, json_object or json_schema.", "text.format.type")
