"""OpenAI chat request → Bedrock ``Converse`` / ``ConverseStream`` request.

==========================  ==================================================
OpenAI                      Converse
==========================  ==================================================
system / developer msgs     ``system`` text blocks (hoisted, in order)
user content                ``text``; image data URLs → ``image`` (png, jpeg,
                            gif, webp; base64 ``bytes``); PDF and other
                            document data URLs → ``document``
assistant content           ``text``; ``tool_calls`` → ``toolUse`` blocks
``tool`` messages           ``toolResult`` blocks in a user turn (``json``
                            when the result is a JSON object, else ``text``)
consecutive same-role turns merged into one turn
``tools`` (function)        ``toolConfig.tools[].toolSpec`` (``inputSchema.json``)
``tool_choice``             auto → auto, required → any, a named function →
                            tool; ``none`` sends no ``toolChoice`` (Converse
                            has no "none"; the model may still call a tool)
max tokens, temperature,    ``inferenceConfig.maxTokens``, ``temperature``,
top_p, stop                 ``topP``, ``stopSequences``
``reasoning_effort``        Anthropic models (``anthropic.`` in the model id):
                            ``additionalModelRequestFields.thinking`` with the
                            Anthropic adapter's budgets; temperature and top_p
                            are then left out, as Anthropic requires
``n`` above 1               400: Converse returns one choice
==========================  ==================================================

Not translated: ``response_format``, logprobs, audio.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.errors import InvalidRequest
from tollway.wire.anthropic import DEFAULT_MAX_TOKENS, MIN_THINKING_BUDGET, THINKING_BUDGETS

__all__ = ["build_converse_request"]

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                  "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "text/html": "html",
                     "text/plain": "txt", "text/markdown": "md", "application/msword": "doc",
                     "application/vnd.openxmlformats-officedocument.wordprocessingml.document":
                     "docx", "application/vnd.ms-excel": "xls",
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx"}
_CHOICES: dict[str, dict[str, Any]] = {"auto": {"auto": {}}, "required": {"any": {}}}


def build_converse_request(
    body: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    model: str,
    max_output_tokens: int | None,
) -> dict[str, Any]:
    """The JSON body for ``POST /model/{modelId}/converse`` (and ``converse-stream``)."""
    if body.get("n") not in (None, 1):
        raise InvalidRequest("n: Bedrock's Converse API returns one choice; n must be 1",
                             param="n")
    system, turns = translate_messages(messages)
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    explicit = max_output_tokens or body.get("max_completion_tokens") or body.get("max_tokens")
    budget = 0
    effort = body.get("reasoning_effort")
    if "anthropic." in model and isinstance(effort, str):
        budget = THINKING_BUDGETS.get(effort, 0)
    if budget:
        limit = int(explicit or DEFAULT_MAX_TOKENS + budget)
        budget = min(budget, limit - 1)
    if budget >= MIN_THINKING_BUDGET:
        inference["maxTokens"] = limit
        out["additionalModelRequestFields"] = {
            "thinking": {"type": "enabled", "budget_tokens": budget}}
    else:
        if explicit:
            inference["maxTokens"] = int(explicit)
        if body.get("temperature") is not None:
            inference["temperature"] = body["temperature"]
        if body.get("top_p") is not None:
            inference["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if inference:
        out["inferenceConfig"] = inference
    if tools:
        config: dict[str, Any] = {"tools": translate_tools(tools)}
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            config["toolChoice"] = choice
        out["toolConfig"] = config
    return out


def translate_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages → (system blocks, Converse messages with same roles merged)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(b for b in _blocks(msg.get("content"), i) if "text" in b)
            continue
        if role == "user":
            blocks, conv_role = _blocks(msg.get("content"), i), "user"
        elif role == "assistant":
            blocks = [b for b in _blocks(msg.get("content"), i) if "text" in b]
            blocks.extend(_tool_use(call, i) for call in msg.get("tool_calls") or ())
            conv_role = "assistant"
        elif role in ("tool", "function"):
            blocks, conv_role = [_tool_result(msg)], "user"
        else:
            raise InvalidRequest(f"messages[{i}].role: unsupported role {role!r}", param="messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == conv_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": conv_role, "content": blocks})
    return system, turns


def _blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages[{i}].content: expected a string or a list", param="messages"
        )
    out: list[dict[str, Any]] = []
    for n, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"messages[{i}].content: bad content part", param="messages")
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                out.append({"text": str(part["text"])})
        elif kind == "image_url":
            image = part.get("image_url")
            url = str((image.get("url") if isinstance(image, dict) else image) or "")
            mime, data = _data_url(url, i)
            fmt = _IMAGE_FORMATS.get(mime)
            if fmt is None:
                raise InvalidRequest(f"messages[{i}]: image type {mime!r} is not supported")
            out.append({"image": {"format": fmt, "source": {"bytes": data}}})
        elif kind == "file":
            file = part.get("file") or {}
            mime, data = _data_url(str(file.get("file_data") or ""), i)
            doc_fmt = _DOCUMENT_FORMATS.get(mime)
            if doc_fmt is None:
                raise InvalidRequest(f"messages[{i}]: document type {mime!r} is not supported")
            name = str(file.get("filename") or f"document-{i}-{n}").rsplit(".", 1)[0]
            out.append({"document": {"format": doc_fmt, "name": name[:200] or "document",
                                     "source": {"bytes": data}}})
        elif kind != "refusal":
            raise InvalidRequest(
                f"messages[{i}].content: part type {kind!r} is not supported by this model",
                param="messages",
            )
    return out


def _data_url(url: str, i: int) -> tuple[str, str]:
    if not url.startswith("data:"):
        raise InvalidRequest(
            f"messages[{i}]: Bedrock takes images and files inline: send a base64 data URL",
            param="messages",
        )
    header, sep, data = url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise InvalidRequest(f"messages[{i}]: data URLs must be base64", param="messages")
    return mime.lower(), data


def _tool_use(call: dict[str, Any], i: int) -> dict[str, Any]:
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
    return {"toolUse": {"toolUseId": str(call.get("id") or ""),
                        "name": str(function.get("name") or ""), "input": args}}


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    text = "" if content is None else str(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    block = {"json": value} if isinstance(value, dict) else {"text": text}
    call_id = msg.get("tool_call_id") or msg.get("name") or ""
    return {"toolResult": {"toolUseId": str(call_id), "content": [block]}}


def translate_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools → Converse ``toolSpec`` entries."""
    out = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest("tools: only function tools are supported", param="tools")
        spec: dict[str, Any] = {
            "name": fn["name"],
            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append({"toolSpec": spec})
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "none":
        return None
    if isinstance(choice, str) and choice in _CHOICES:
        return dict(_CHOICES[choice])
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"tool": {"name": choice["function"].get("name")}}
    raise InvalidRequest(f"tool_choice: unsupported value {choice!r}", param="tool_choice")
