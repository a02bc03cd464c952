"""The Anthropic adapter's side for clients that speak Messages themselves (``/v1/messages``).

The client's own body goes upstream (``native_body``), with its ``anthropic-version`` and
betas (``native_headers``); every upstream event comes back verbatim as ``Raw`` before
what it means (``read_raw``); ``count_tokens`` asks the upstream to count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
import orjson

from tollway.chunks import Event, Raw
from tollway.config import DeploymentConfig
from tollway.errors import UpstreamError
from tollway.providers.base import AnthropicNative, ChatRequest
from tollway.providers.pacing import read_chunks
from tollway.providers.sse_decoder import SSEDecoder
from tollway.providers.transport import json_body
from tollway.wire.anthropic import translate_messages, translate_tools

__all__ = ["count_tokens", "native_body", "native_headers", "read_raw"]


class _Translator(Protocol):
    done: bool

    def feed(self, obj: dict[str, Any]) -> list[Event]: ...


def native_body(
    request: ChatRequest, native: AnthropicNative, deployment: DeploymentConfig
) -> dict[str, Any]:
    """The client's body with the deployment's model, the request's cap, ``stream`` and
    whatever the platform-tool loop added to the conversation."""
    body = dict(native.body)
    body["model"] = deployment.model
    _append_added(body, request, native)
    if request.max_output_tokens:
        body["max_tokens"] = request.max_output_tokens
    if request.stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def _append_added(body: dict[str, Any], request: ChatRequest, native: AnthropicNative) -> None:
    """Append what tollway added to the chat request (the platform-tool loop's tools,
    turns and its ``tool_choice: auto`` after a forced first round) to a client's body."""
    tools = (request.tools or [])[native.chat_tools:]
    if tools:
        body["tools"] = [*(body.get("tools") or []), *translate_tools(tools)]
    added = request.messages[native.chat_messages:]
    if not added:
        return
    _system, turns = translate_messages(added)
    messages = list(body.get("messages") or [])
    for turn in turns:
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == turn["role"]:
            content = last.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}] if content else []
            messages[-1] = {**last, "content": [*(content or []), *turn["content"]]}
        else:
            messages.append(turn)
    body["messages"] = messages
    choice = body.get("tool_choice")
    if (request.body.get("tool_choice") == "auto" and isinstance(choice, dict)
            and choice.get("type") in ("any", "tool")):
        body["tool_choice"] = {k: v for k, v in choice.items() if k != "name"} | {"type": "auto"}


def native_headers(ours: dict[str, str], client: dict[str, str]) -> dict[str, str]:
    """Our upstream headers with the client's ``anthropic-version`` and its betas added."""
    headers = dict(ours)
    version = client.get("anthropic-version")
    if version:
        headers["anthropic-version"] = version
    beta = client.get("anthropic-beta")
    if beta:
        mine = headers.get("anthropic-beta")
        headers["anthropic-beta"] = f"{mine},{beta}" if mine else beta
    return headers


async def read_raw(
    resp: aiohttp.ClientResponse, translator: _Translator, provider: str,
    only: str | None = None,
) -> AsyncIterator[Event]:
    """Each upstream event as ``Raw`` (verbatim; with ``only``, just the deltas of that
    type), then the events ``translator`` makes of it. ``error`` events are not passed
    on raw: the translator raises them for the router to report."""
    decoder = SSEDecoder()
    translate = translator.feed
    loads = orjson.loads
    pending = True
    chunks = read_chunks(resp)
    while pending:
        data = await anext(chunks, b"")
        if data:
            messages = decoder.decode(data)
        else:
            pending = False
            messages = decoder.flush()
        for name, payload in messages:
            if not payload:
                continue
            obj = loads(payload)
            if not isinstance(obj, dict):
                raise UpstreamError(f"provider {provider!r} sent an event that is not "
                                    "a JSON object", status=502)
            kind = name or str(obj.get("type") or "")
            delta = obj.get("delta")
            detail = str(delta.get("type") or "") if isinstance(delta, dict) else ""
            if kind != "error" and (only is None or detail == only):
                index = obj.get("index")
                yield Raw(b"event: " + kind.encode() + b"\ndata: " + payload.encode() + b"\n\n",
                          kind, index if isinstance(index, int) else -1, detail)
            for event in translate(obj):
                yield event
    if not translator.done:
        raise UpstreamError(f"provider {provider!r} ended the stream early", status=502)


async def count_tokens(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any],
    deployment: DeploymentConfig, provider: str,
    error_from: Callable[[int, bytes, Any, str], UpstreamError],
) -> dict[str, Any] | None:
    """POST ``body`` to the upstream's ``count_tokens``: its answer, None when it cannot
    be had (unreachable, 5xx, 429, credentials), or its 4xx raised."""
    timeout = aiohttp.ClientTimeout(total=deployment.timeouts.first_token,
                                    connect=deployment.timeouts.connect)
    try:
        async with session.post(url, data=json_body(body), headers=headers,
                                timeout=timeout) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                error = error_from(resp.status, raw, resp.headers, provider)
                if error.retryable or error.misconfigured:
                    return None
                raise error
            parsed = orjson.loads(raw)
    except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None
