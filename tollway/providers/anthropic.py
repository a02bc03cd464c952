"""Adapter for Anthropic's Messages API (``type: anthropic``), streaming or not.

The request is built by ``tollway.wire.anthropic``. The answer becomes events:

=================================  ===========================================
Anthropic                          tollway event
=================================  ===========================================
``message_start``                  ``Start(model)``; its usage is kept
``text_delta``                     ``TextDelta(channel="content")``
``thinking_delta``                 ``TextDelta(channel="reasoning")``
``tool_use`` block + json deltas   ``ToolCallDelta`` (id = the tool_use id,
                                   index 0, 1, … over tool blocks)
``message_delta.stop_reason``      ``Finish`` (end_turn / stop_sequence /
                                   pause_turn → stop, max_tokens → length,
                                   tool_use → tool_calls, refusal →
                                   content_filter)
usage (start + delta, cumulative)  one ``Usage`` after ``Finish``: prompt =
                                   input + cache read + cache creation,
                                   cached = cache read, cache_write = creation
                                   (1-hour tier apart), completion = output
                                   (none if the upstream reported none); the
                                   start's usage also rides on ``Start``
``error``                          ``UpstreamError`` (overloaded → retryable)
``citations_delta`` on a text      ``ProviderFields``: ``delta.annotations``,
block                              OpenAI's ``url_citation`` over the block's
                                   content span (at the block's end)
``server_tool_use`` block          ``ProviderBlock`` (its end; input digested)
``web_search_tool_result`` block   ``ProviderBlock`` + ``ProviderFields``:
                                   ``delta.web_search_results`` = [{url,
                                   title, page_age}]
``fallback`` block                 ``Start(to.model)`` (the served model
                                   changes) + ``ProviderBlock``
any other block type               ``ProviderBlock`` (type and field names)
ping, signature / unknown deltas   ignored (never an error)
=================================  ===========================================

Inbound ``/v1/messages`` (``request.anthropic`` set): the client's own body is
sent (the deployment's model, ``max_tokens`` = the request's cap, ``stream``),
with its ``anthropic-version`` and ``anthropic-beta`` headers, and every upstream
event (but ``error``, which the router reports) is yielded as ``Raw`` before the
events above, so the client gets it unchanged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from tollway.chunks import (
    Event,
    Finish,
    FinishReason,
    ProviderBlock,
    ProviderFields,
    Raw,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.anthropic_native import count_tokens, native_body, native_headers, read_raw
from tollway.providers.base import ChatRequest
from tollway.providers.pacing import read_chunks
from tollway.providers.sse_decoder import SSEDecoder
from tollway.providers.transport import upstream_events
from tollway.wire.anthropic import build_messages_request

__all__ = [
    "ANTHROPIC_VERSION",
    "AnthropicProvider",
    "MessageTranslator",
    "error_from_response",
    "error_from_type",
    "events_from_message",
]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type → (status tollway reports, retryable).
_ERROR_TYPES: dict[str, tuple[int, bool]] = {
    "invalid_request_error": (400, False),
    "not_found_error": (404, False),
    "request_too_large": (413, False),
    "rate_limit_error": (429, True),
    "api_error": (502, True),
    "overloaded_error": (503, True),
    "timeout_error": (504, True),
}


class AnthropicProvider:
    """Streams from ``POST {base_url}/v1/messages``."""

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._session = session
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._headers = {
            "Content-Type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            **config.headers,
        }
        if config.api_key:
            self._headers["x-api-key"] = config.api_key

    def build_body(self, request: ChatRequest, deployment: DeploymentConfig) -> dict[str, Any]:
        """The upstream JSON for this request and deployment."""
        if request.anthropic is not None:  # the client's own Messages body, as it sent it
            return native_body(request, request.anthropic, deployment)
        return build_messages_request(
            request.body,
            request.messages,
            request.tools,
            deployment.model,
            request.max_output_tokens,
            deployment.max_output_tokens,
            request.stream,
        )

    def headers_for(self, request: ChatRequest) -> dict[str, str]:
        """Upstream headers: the client's ``anthropic-version`` and betas join ours."""
        native = request.anthropic
        if native is None or not native.headers:
            return self._headers
        return native_headers(self._headers, native.headers)

    def stream(self, request: ChatRequest, deployment: DeploymentConfig) -> AsyncIterator[Event]:
        native = request.anthropic is not None
        raw = native and request.anthropic.raw_events  # type: ignore[union-attr]
        return upstream_events(
            self._session,
            self._url,
            self.headers_for(request),
            lambda: orjson.dumps(self.build_body(request, deployment)),
            deployment,
            self.name,
            stream=request.stream,
            error_from=error_from_response,
            read_stream=(self._read_raw if raw else self._read_signatures) if native
            else self._read_stream,
            read_whole=_whole_with_raw if raw else events_from_message,
        )

    async def count_tokens(
        self, body: dict[str, Any], deployment: DeploymentConfig, headers: dict[str, str]
    ) -> dict[str, Any] | None:
        """The upstream's ``/v1/messages/count_tokens`` answer for a Messages body; None
        when it cannot be had (the caller counts itself); its 4xx is raised."""
        return await count_tokens(
            self._session, self._url + "/count_tokens", native_headers(self._headers, headers),
            {**body, "model": deployment.model}, deployment, self.name, error_from_response,
        )

    async def _read_stream(self, resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
        decoder = SSEDecoder()
        translator = MessageTranslator(self.name)
        translate = translator.feed
        loads = orjson.loads
        async for data in read_chunks(resp):
            for _name, payload in decoder.decode(data):
                if payload:
                    for event in translate(loads(payload)):
                        yield event
        for _name, payload in decoder.flush():
            if payload:
                for event in translate(loads(payload)):
                    yield event
        if not translator.done:
            raise UpstreamError(f"provider {self.name!r} ended the stream early", status=502)

    def _read_signatures(self, resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
        """``_read_raw`` when tollway writes the stream: only thinking signatures as ``Raw``."""
        return read_raw(resp, MessageTranslator(self.name), self.name, only="signature_delta")

    def _read_raw(self, resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
        return read_raw(resp, MessageTranslator(self.name), self.name)

    async def aclose(self) -> None:
        return None


class MessageTranslator:
    """Incremental: one Messages stream event in, the tollway events it implies out."""

    __slots__ = (
        "_blocks", "_cites", "_finished", "_offset", "_provider", "_server", "_start_usage",
        "_tools", "_usage", "done",
    )  # fmt: skip

    def __init__(self, provider: str = "anthropic") -> None:
        self._provider = provider
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, list[Any]] = {}  # block index -> [tool index, args seen]
        self._server: dict[int, list[Any]] = {}  # server tool block -> [its block, input parts]
        self._cites: dict[int, list[Any]] = {}  # text block -> [start offset, citations]
        self._offset = 0  # content characters so far (citation spans)
        self._start_usage: Usage | None = None
        self._tools = 0
        self._finished = False
        self.done = False

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        """Translate one decoded SSE ``data`` object."""
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if not isinstance(delta, dict):
                return []
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                if not text or not isinstance(text, str):
                    return []
                self._offset += len(text)
                return [TextDelta(text)]
            if dtype == "thinking_delta":
                text = delta.get("thinking")
                return [TextDelta(text, "reasoning")] if text else []
            if dtype == "input_json_delta":
                index = obj.get("index", -1)
                block = self._blocks.get(index)
                part = delta.get("partial_json")
                if not part or not isinstance(part, str):
                    return []
                if block is None:
                    server = self._server.get(index)
                    if server is not None:
                        server[1].append(part)
                    return []
                block[1] = True
                return [ToolCallDelta(block[0], part)]
            if dtype == "citations_delta":
                cites = self._cites.get(obj.get("index", -1))
                citation = delta.get("citation")
                if cites is not None and isinstance(citation, dict):
                    cites[1].append(citation)
                return []
            return []  # signature_delta, compaction_delta, unknown
        if kind == "content_block_start":
            block = obj.get("content_block")
            if not isinstance(block, dict):
                return []
            return self._block_start(obj.get("index", -1), block)
        if kind == "content_block_stop":
            index = obj.get("index", -1)
            block = self._blocks.pop(index, None)
            if block is not None and not block[1]:
                return [ToolCallDelta(block[0], "{}")]  # a tool called with no arguments
            if self._server:
                server = self._server.pop(index, None)
                if server is not None:
                    return [_server_tool_block(server[0], "".join(server[1]))]
            if self._cites:
                cites = self._cites.pop(index, None)
                if cites is not None and cites[1]:
                    fields = _annotations(cites[1], cites[0], self._offset)
                    return [fields] if fields is not None else []
            return []
        if kind == "message_start":
            message = obj.get("message") or {}
            self._usage.update(message.get("usage") or {})
            # the prompt side (with cache reads and writes) is known now: a call cut
            # short is billed with it
            start_usage = usage_from_anthropic(self._usage) if self._usage else None
            self._start_usage = start_usage
            return [Start(model=str(message.get("model") or ""), usage=start_usage)]
        if kind == "message_delta":
            self._usage.update(obj.get("usage") or {})
            reason = (obj.get("delta") or {}).get("stop_reason")
            if not reason or self._finished:
                return []
            self._finished = True
            return [Finish(_FINISH.get(reason, "stop")), *self._final_usage()]
        if kind == "message_stop":
            self.done = True
            if self._finished:
                return []
            self._finished = True
            return [Finish("stop"), *self._final_usage()]
        if kind == "error":
            err = obj.get("error") or {}
            raise error_from_type(
                str(err.get("type") or "api_error"),
                str(err.get("message") or f"provider {self._provider!r} reported an error"),
            )
        return []  # ping and unknown events

    def _final_usage(self) -> list[Event]:
        # No usage reported (it happens): emit none, so the meter estimates.
        return [usage_from_anthropic(self._usage)] if self._usage else []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[Event]:
        btype = block.get("type")
        if btype == "text":
            self._cites[index] = [self._offset, []]
            text = block.get("text")
            if not text or not isinstance(text, str):
                return []
            self._offset += len(text)
            return [TextDelta(text)]
        if btype == "thinking":
            return [TextDelta(block["thinking"], "reasoning")] if block.get("thinking") else []
        if btype == "server_tool_use":
            given = block.get("input")
            self._server[index] = [block, [orjson.dumps(given).decode()] if given else []]
            return []
        if btype != "tool_use":
            out = other_block(block)
            if out and type(out[0]) is Start:  # a relabel keeps the call's prompt usage
                out[0] = Start(out[0].model, usage=self._start_usage)
            return out
        tool_index = self._tools
        self._tools += 1
        given = block.get("input")
        args = orjson.dumps(given).decode() if given else ""
        self._blocks[index] = [tool_index, bool(args)]
        return [ToolCallDelta(tool_index, args, id=block.get("id"), name=block.get("name"))]


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _server_tool_block(block: dict[str, Any], arguments: str) -> ProviderBlock:
    """A ``server_tool_use`` block for the trace: its name and id, the SHA-256 of its
    input's canonical JSON (sorted keys, compact); like platform tool calls, never the
    input itself."""
    try:  # the same digest streamed or not: of the input's canonical JSON
        arguments = orjson.dumps(orjson.loads(arguments or "{}"),
                                 option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        pass
    return ProviderBlock("server_tool_use", {
        "id": block.get("id"), "name": block.get("name"),
        "input_sha256": _digest(arguments)})


def _annotations(
    citations: list[dict[str, Any]], start: int, end: int
) -> ProviderFields | None:
    """Citations of one text block → OpenAI ``url_citation`` annotations over its span."""
    annotations = [
        {"type": "url_citation", "url_citation": {
            "url": c["url"], "title": str(c.get("title") or ""),
            "start_index": start, "end_index": end}}
        for c in citations if isinstance(c.get("url"), str)
    ]
    return ProviderFields(0, on_delta={"annotations": annotations}) if annotations else None


def other_block(block: dict[str, Any]) -> list[Event]:
    """A block that is not text, thinking nor a client tool call: what it implies.

    Web search results reach the client (``delta.web_search_results``); a fallback
    changes the served model; every such block is recorded in the trace, as its
    type and field names only for a type tollway does not know.
    """
    btype = str(block.get("type") or "unknown")
    if btype == "web_search_tool_result":
        content = block.get("content")
        results = [
            {"url": r["url"], "title": r.get("title"), "page_age": r.get("page_age")}
            for r in (content if isinstance(content, list) else ())
            if isinstance(r, dict) and isinstance(r.get("url"), str)
        ]
        record: dict[str, Any] = {"tool_use_id": block.get("tool_use_id"),
                                  "results": len(results)}
        if isinstance(content, dict):  # web_search_tool_result_error
            record["error_code"] = content.get("error_code")
        out: list[Event] = [ProviderBlock(btype, record)]
        if results:
            out.append(ProviderFields(0, on_delta={"web_search_results": results}))
        return out
    if btype == "fallback":
        to = block.get("to")
        model = to.get("model") if isinstance(to, dict) else None
        record = {"from": _model_of(block.get("from")), "to": model}
        trigger = block.get("trigger")
        if isinstance(trigger, dict):
            record["trigger"] = trigger.get("type")
        out = [ProviderBlock(btype, record)]
        if isinstance(model, str) and model:
            out.insert(0, Start(model))
        return out
    return [ProviderBlock(btype, {"fields": sorted(str(k) for k in block)})]


def _model_of(value: Any) -> Any:
    return value.get("model") if isinstance(value, dict) else None


def usage_from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic usage → tollway usage.

    Anthropic's ``input_tokens`` exclude cache reads and writes; ours include them
    (``prompt_tokens`` = input + cache read + cache write), with the parts kept:
    reads in ``cached_tokens``, writes in ``cache_write_tokens`` and the 1-hour tier
    of them (``cache_creation.ephemeral_1h_input_tokens``) in
    ``cache_write_1h_tokens``. ``output_tokens`` include thinking (its
    ``thinking_tokens`` are a part), as in OpenAI's convention.
    """
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    tiers = usage.get("cache_creation")
    write_1h = 0
    if isinstance(tiers, dict):
        write_5m = _count(tiers.get("ephemeral_5m_input_tokens"))
        write_1h = _count(tiers.get("ephemeral_1h_input_tokens"))
        cache_write = max(cache_write, write_5m + write_1h)
    details = usage.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
        completion_tokens=_count(usage.get("output_tokens")),
        cached_tokens=cache_read,
        reasoning_tokens=thinking,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(write_1h, cache_write),
    )


def _count(value: Any) -> int:
    """A reported token count: a non-negative whole number, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return 0
    return int(min(max(value, 0), 1 << 53))


def events_from_message(message: dict[str, Any]) -> list[Event]:
    """A non-streaming Messages response → the same events a stream would give."""
    if message.get("type") == "error":
        err = message.get("error") or {}
        raise error_from_type(str(err.get("type") or "api_error"), str(err.get("message") or ""))
    out: list[Event] = [Start(model=str(message.get("model") or ""))]
    tools = 0
    offset = 0  # content characters so far (citation spans)
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype == "text":
            text = block.get("text")
            if text and isinstance(text, str):
                out.append(TextDelta(text))
                citations = block.get("citations")
                if isinstance(citations, list) and citations:
                    fields = _annotations(
                        [c for c in citations if isinstance(c, dict)], offset, offset + len(text)
                    )
                    if fields is not None:
                        out.append(fields)
                offset += len(text)
        elif btype == "thinking":
            if block.get("thinking"):
                out.append(TextDelta(block["thinking"], "reasoning"))
        elif btype == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            out.append(ToolCallDelta(tools, args, id=block.get("id"), name=block.get("name")))
            tools += 1
        elif btype == "server_tool_use":
            given = block.get("input")
            out.append(_server_tool_block(block, orjson.dumps(given).decode() if given else ""))
        else:
            out += other_block(block)
    out.append(Finish(_FINISH.get(str(message.get("stop_reason")), "stop")))
    if message.get("usage"):
        out.append(usage_from_anthropic(message["usage"]))
    return out


def _whole_with_raw(message: dict[str, Any]) -> list[Event]:
    """``events_from_message`` led by the whole answer as ``Raw`` (kind ``message``)."""
    return [Raw(orjson.dumps(message), "message"), *events_from_message(message)]


def error_from_type(err_type: str, message: str, retry_after: float | None = None) -> UpstreamError:
    """An Anthropic error type (in a body or an ``error`` event) → ``UpstreamError``."""
    if err_type in ("authentication_error", "permission_error"):
        return _misconfigured(err_type)
    status, retryable = _ERROR_TYPES.get(err_type, (502, True))
    return UpstreamError(
        message,
        status=status,
        retryable=retryable,
        retry_after=retry_after,
        code=err_type,
        type="invalid_request_error" if not retryable else "upstream_error",
    )


def error_from_response(status: int, raw: bytes, headers: Any, provider: str) -> UpstreamError:
    """An HTTP error answer from Anthropic, mapped for the router."""
    if status in (401, 403):
        return _misconfigured(f"HTTP {status}", provider)
    err: dict[str, Any] = {}
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
    except orjson.JSONDecodeError:
        pass
    message = str(err.get("message") or f"provider {provider!r} answered HTTP {status}")
    code = err.get("type")
    if status == 429 or status >= 500:
        return UpstreamError(
            message,
            status={429: 429, 504: 504, 529: 503, 503: 503}.get(status, 502),
            retryable=True,
            retry_after=_retry_after(headers.get("Retry-After") if headers is not None else None),
            code=code,
        )
    return UpstreamError(
        message,
        status=status,
        retryable=status in (408, 409),
        code=code,
        type="invalid_request_error",
    )


def _misconfigured(what: str, provider: str = "anthropic") -> UpstreamError:
    return UpstreamError(
        f"provider {provider!r} rejected tollway's credentials ({what}); "
        "this is a gateway configuration error",
        status=502,
        retryable=True,
        misconfigured=True,
        code="upstream_auth_failed",
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
