"""Anthropic Messages request → OpenAI chat request (inbound ``/v1/messages``).

The pipeline's request is a chat request: billing counts it, the platform-tool
loop extends it and every non-Anthropic adapter sends it. An Anthropic deployment
sends the client's own body instead (``ChatRequest.anthropic``). Mapping:

=============================  ===================================================
Anthropic                      chat completions
=============================  ===================================================
``system`` (string or blocks)  one ``system`` message (text parts)
``text`` block                 text part (``cache_control`` dropped: a hint)
``image`` base64 / url         ``image_url`` (data URL / URL)
``document`` base64 PDF        ``file`` part (``file_data`` data URL)
``document`` text source       text part
``tool_use`` (assistant)       ``tool_calls`` (input as JSON arguments)
``tool_result`` (user)         a ``tool`` message each, before the turn's other
                               parts; ``is_error`` prefixes ``[error] ``
``thinking``                   dropped (chat has no way to send it back)
``redacted_thinking``          dropped
``tools`` (custom)             function tools (``input_schema`` → parameters)
``tool_choice``                auto → auto, any → required, tool → named,
                               none → none; ``disable_parallel_tool_use`` →
                               ``parallel_tool_calls: false``
``stop_sequences``             ``stop``
``max_tokens``                 ``max_tokens`` (and the output cap)
``temperature`` / ``top_p``    same; ``top_k`` passed on as ``top_k`` (vLLM,
                               llama.cpp and Ollama read it)
``metadata.user_id``           ``user``
``thinking`` enabled           ``reasoning_effort`` by budget (< 4096 low,
                               < 16384 medium, else high); adaptive → medium
=============================  ===================================================

What chat cannot express is collected in ``problems`` (server tools such as web
search, images in tool results, URL or file documents, ``container``,
``mcp_servers``, unknown block types): sent to a non-Anthropic deployment it is a
400 naming the first one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["ChatTranslation", "to_chat"]

# Top-level Messages fields with no chat equivalent that only matter to Anthropic.
_ANTHROPIC_ONLY = ("container", "mcp_servers", "context_management")


@dataclass(slots=True)
class ChatTranslation:
    """The chat body, its messages and tools, and what could not be expressed."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    problems: list[str] = field(default_factory=list)


def to_chat(body: dict[str, Any], model: str) -> ChatTranslation:
    """Translate a validated Messages body (never raises on well-formed input)."""
    problems: list[str] = []
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        parts = [_part(b, "system", problems) for b in system]
        kept = [p for p in parts if p is not None]
        if kept:
            messages.append({"role": "system", "content": kept})
    for i, msg in enumerate(body.get("messages") or ()):
        messages.extend(_turn(msg, f"messages.{i}", problems))
    out: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "top_k", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    effort = _effort(body.get("thinking"))
    if effort:
        out["reasoning_effort"] = effort
    tools = _tools(body.get("tools"), problems)
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
        if kind == "tool":
            mapped = {"type": "function", "function": {"name": choice.get("name")}}
        if mapped is not None:
            out["tool_choice"] = mapped
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    for name in _ANTHROPIC_ONLY:
        if body.get(name) is not None:
            problems.append(f"'{name}' has no chat-completions equivalent")
    return ChatTranslation(out, messages, tools or None, problems)


def _effort(thinking: Any) -> str | None:
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "adaptive":
        return "medium"
    if kind != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    budget = budget if isinstance(budget, int) else 0
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _tools(tools: Any, problems: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or ()):
        kind = tool.get("type")
        if kind not in (None, "custom") or "input_schema" not in tool:
            problems.append(f"tools.{i}: server tool {kind or tool.get('name')!r} "
                            "has no chat-completions equivalent")
            continue
        fn: dict[str, Any] = {"name": tool.get("name"), "parameters": tool.get("input_schema")}
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _turn(msg: dict[str, Any], where: str, problems: list[str]) -> list[dict[str, Any]]:
    role = msg.get("role")
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    parts: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content or ()):
        kind = block.get("type")
        here = f"{where}.content.{j}"
        if kind == "tool_use" and role == "assistant":
            calls.append({
                "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"),
                             "arguments": orjson.dumps(block.get("input") or {}).decode()},
            })
        elif kind == "tool_result":
            results.append(_tool_result(block, here, problems))
        elif kind in ("thinking", "redacted_thinking", "server_tool_use",
                      "platform_tool_result"):
            continue  # nothing chat can send back (tollway's own result blocks included)
        else:
            part = _part(block, here, problems)
            if part is not None:
                parts.append(part)
    out: list[dict[str, Any]] = list(results)
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p.get("type") == "text")
        if any(p.get("type") != "text" for p in parts):
            problems.append(f"{where}: an assistant turn may only hold text and tool_use")
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        if text or calls:
            out.append(message)
    elif parts:
        out.append({"role": role, "content": parts})
    return out


def _tool_result(block: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    content = block.get("content")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            converted = _part(part, f"{where}.content.{k}", problems)
            if converted is None:
                continue
            if converted.get("type") != "text":
                problems.append(f"{where}: a tool result with images or documents has no "
                                "chat-completions equivalent")
                continue
            texts.append(converted["text"])
        text = "\n".join(texts)
    else:
        text = content if isinstance(content, str) else ""
    if block.get("is_error"):
        text = "[error] " + text
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _part(block: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    stype = source.get("type")
    if kind == "image":
        if stype == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            return {"type": "image_url", "image_url": {"url": url}}
        if stype == "url":
            return {"type": "image_url", "image_url": {"url": source.get("url")}}
    elif kind == "document":
        if stype == "base64":
            media = source.get("media_type") or "application/pdf"
            url = f"data:{media};base64,{source.get('data')}"
            return {"type": "file", "file": {"file_data": url, "filename": "document.pdf"}}
        if stype == "text":
            return {"type": "text", "text": str(source.get("data") or "")}
    problems.append(f"{where}: a {kind!r} block"
                    + (f" with a {stype!r} source" if stype else "")
                    + " has no chat-completions equivalent")
    return None
