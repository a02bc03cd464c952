"""Adapter for any OpenAI-compatible ``/chat/completions`` upstream.

OpenAI, vLLM, Ollama, llama.cpp server, Groq, DeepSeek, Together… The request is
the client's JSON with the model, messages, tools and limits tollway decides;
``stream_options.include_usage`` is always requested so usage is real. Upstream
``reasoning`` and ``reasoning_content`` deltas both become reasoning text.

The stream is read by ``ChunkReader``: the served model is the first one a chunk
names (Azure's first chunk has ``"model": ""``), and fields tollway does not model,
on a chunk, a choice or a delta, become ``ProviderFields`` events (see
``events_from_chunk``). Output cap field: ``output_cap_field``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from tollway.chunks import (
    Event,
    Finish,
    ProviderFields,
    ReasoningConvention,
    Start,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.pacing import read_chunks
from tollway.providers.sse_decoder import SSEDecoder
from tollway.providers.transport import upstream_events

__all__ = [
    "CAP_FIELDS",
    "ChunkReader",
    "OpenAIProvider",
    "error_from_body",
    "events_from_chunk",
    "events_of_any_chunk",
    "events_from_completion",
    "output_cap_field",
    "usage_from_openai",
]

_USAGE_KNOWN = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})
# Fields tollway models (or owns) at each level; anything else an upstream sends is
# passed on (ProviderFields). ``obfuscation`` pads the upstream's chunk, not ours.
_CHUNK_KNOWN = frozenset(
    "id object created model choices usage system_fingerprint service_tier obfuscation".split()
)
_CHOICE_KNOWN = frozenset("index delta message logprobs finish_reason".split())
_DELTA_KNOWN = frozenset(
    "role content refusal reasoning_content reasoning tool_calls function_call".split()
)
_PLAIN_DELTA = frozenset(("content", "role"))
CAP_FIELDS = ("max_tokens", "max_completion_tokens")
_MAX_COUNT = 1 << 53


class OpenAIProvider:
    """Streams chat completions from one OpenAI-compatible base URL."""

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._session = session
        self._url = (config.base_url or "").rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json", **config.headers}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._openai_host = _is_openai(config.base_url)
        self._cap_field = str(config.options.get("max_tokens_field") or "max_tokens")

    def build_body(self, request: ChatRequest, deployment: DeploymentConfig) -> dict[str, Any]:
        """The upstream JSON: the client's body with tollway's decisions applied."""
        body = dict(request.body)
        body["model"] = deployment.model
        body["messages"] = request.messages
        if request.tools is not None:
            body["tools"] = request.tools
        if request.stream:
            body["stream"] = True
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body["stream"] = False
            body.pop("stream_options", None)
        limit = request.max_output_tokens
        if limit is not None:
            field = output_cap_field(body, deployment, self._openai_host, self._cap_field)
            body.pop("max_tokens" if field == "max_completion_tokens" else "max_completion_tokens",
                     None)
            body[field] = limit
        return body

    def stream(self, request: ChatRequest, deployment: DeploymentConfig) -> AsyncIterator[Event]:
        convention = deployment.usage.reasoning
        return upstream_events(
            self._session,
            self._url,
            self._headers,
            lambda: orjson.dumps(self.build_body(request, deployment)),
            deployment,
            self.name,
            stream=request.stream,
            error_from=error_from_body,
            read_stream=lambda resp: self._read_stream(resp, convention),
            read_whole=lambda obj: events_from_completion(obj, convention),
        )

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, convention: str = "auto"
    ) -> AsyncIterator[Event]:
        decoder = SSEDecoder()
        loads = orjson.loads
        reader = ChunkReader(self.name, convention)
        feed = reader.feed
        async for data in read_chunks(resp):
            for _event, payload in decoder.decode(data):
                if payload == "[DONE]":
                    for event in reader.end():
                        yield event
                    return
                for event in feed(loads(payload)):
                    yield event
        for _event, payload in decoder.flush():
            if payload != "[DONE]":
                for event in feed(loads(payload)):
                    yield event
        for event in reader.end():
            yield event

    async def aclose(self) -> None:
        return None

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        """``options.max_tokens_field``, when set, names one of the two cap fields."""
        field = config.options.get("max_tokens_field")
        if field is not None and field not in CAP_FIELDS:
            raise ValueError(
                f"options.max_tokens_field: {field!r} is not one of "
                "'max_tokens', 'max_completion_tokens'"
            )


def _logprobs(choice: dict[str, Any]) -> dict[str, Any] | None:
    """A choice's ``logprobs`` object; anything else an upstream puts there (``true``, a
    list) is not one and is dropped rather than passed on or merged."""
    value = choice.get("logprobs")
    return value if isinstance(value, dict) else None


def output_cap_field(
    body: dict[str, Any],
    deployment: DeploymentConfig,
    openai_host: bool,
    provider_default: str = "max_tokens",
) -> str:
    """The field that carries the output cap upstream.

    The one the client used; else ``max_completion_tokens`` for OpenAI itself (its
    reasoning models reject ``max_tokens``); else the deployment's
    ``max_tokens_field``, else the provider's ``options.max_tokens_field``, else
    ``max_tokens`` (what most OpenAI-compatible servers take).
    """
    for field in ("max_completion_tokens", "max_tokens"):  # both: the one tollway reads
        if body.get(field) is not None:
            return field
    if openai_host:
        return "max_completion_tokens"
    return deployment.max_tokens_field or provider_default


def _is_openai(base_url: str | None) -> bool:
    """Whether ``base_url`` is OpenAI's own API."""
    try:
        host = urlsplit(base_url or "").hostname or ""
    except ValueError:
        return False
    return host == "api.openai.com"


class ChunkReader:
    """Turns the chunks of one streamed answer into events, in order.

    The served model is the first one a chunk names: ``Start`` waits for it (Azure's
    first chunk has ``"model": ""`` and only prompt-filter results), but not past the
    first content, finish or usage event, which starts with no model (the router
    then records the deployment's). If a model is named only later, a second
    ``Start`` carries it, so the rest of the stream and the ledger use it.
    """

    __slots__ = ("_provider", "_convention", "_model", "_started", "_held")

    def __init__(self, provider: str = "upstream", convention: str = "auto") -> None:
        self._provider = provider
        self._convention = convention
        self._model = ""
        self._started = False
        self._held: list[Event] = []  # provider fields seen before the Start

    def feed(self, obj: dict[str, Any]) -> list[Event]:
        """The events of one decoded chunk."""
        events = events_from_chunk(obj, self._provider, self._convention)
        if self._model:  # the usual case: nothing more to decide
            return events
        model = obj.get("model")
        if model and isinstance(model, str):
            self._model = model
            self._started = True
            start: list[Event] = [
                Start(model, obj.get("system_fingerprint"), obj.get("service_tier"))
            ]
            held, self._held = self._held, []
            return start + held + events
        if self._started:
            return events
        if all(type(e) is ProviderFields for e in events):
            self._held += events
            return []
        return self._start_unnamed(obj) + events

    def end(self) -> list[Event]:
        """What is still held when the stream ends."""
        if self._started or not self._held:
            return []
        return self._start_unnamed({})

    def _start_unnamed(self, obj: dict[str, Any]) -> list[Event]:
        self._started = True
        held, self._held = self._held, []
        return [Start("", obj.get("system_fingerprint"), obj.get("service_tier")), *held]


def _unknown(obj: dict[str, Any], known: frozenset[str]) -> dict[str, Any] | None:
    """The fields of ``obj`` not in ``known`` (None when there are none: the usual case)."""
    if obj.keys() <= known:
        return None
    return {k: v for k, v in obj.items() if k not in known}


def events_from_chunk(
    obj: dict[str, Any], provider: str = "upstream", convention: str = "auto"
) -> list[Event]:
    """Translate one ``chat.completion.chunk`` object (``convention``: see usage_from_openai).

    Unknown fields become one ``ProviderFields`` per choice that has some, before
    that choice's events; top-level ones ride on the first of them (or on one with
    ``choice=None`` when the chunk has no choice with unknown fields).
    """
    choices = obj.get("choices")
    if type(choices) is list and len(choices) == 1 and obj.keys() <= _CHUNK_KNOWN:
        # the usual chunk: one choice's piece of content and nothing else (no error: that
        # key is not a known one)
        choice = choices[0]
        if type(choice) is dict and choice.keys() <= _CHOICE_KNOWN:
            delta = choice.get("delta")
            content = delta.get("content") if type(delta) is dict else None
            if (
                content
                and delta is not None
                and delta.keys() <= _PLAIN_DELTA
                and choice.get("finish_reason") is None
                and choice.get("logprobs") is None
                and not obj.get("usage")
            ):
                return [TextDelta(content, "content", choice.get("index") or 0)]
    return events_of_any_chunk(obj, provider, convention)


def events_of_any_chunk(
    obj: dict[str, Any], provider: str = "upstream", convention: str = "auto"
) -> list[Event]:
    """``events_from_chunk`` without its shortcut for the usual chunk (the same events)."""
    if "error" in obj:
        raise error_from_event(obj, provider)
    out: list[Event] = []
    top = _unknown(obj, _CHUNK_KNOWN)
    for choice in obj.get("choices") or ():
        index = choice.get("index") or 0
        delta = choice.get("delta")
        on_choice = _unknown(choice, _CHOICE_KNOWN)
        on_delta = _unknown(delta, _DELTA_KNOWN) if isinstance(delta, dict) else None
        if on_choice or on_delta or top:
            out.append(ProviderFields(index, top, on_choice, on_delta))
            top = None
        if delta:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.append(TextDelta(reasoning, "reasoning", index))
            content = delta.get("content")
            logprobs = _logprobs(choice)
            if content:
                out.append(TextDelta(content, "content", index, logprobs))
                logprobs = None
            refusal = delta.get("refusal")
            if refusal:
                out.append(TextDelta(refusal, "refusal", index, logprobs))
            calls = delta.get("tool_calls")
            if calls:
                for call in calls:
                    fn = call.get("function") or {}
                    out.append(
                        ToolCallDelta(
                            call.get("index") or 0,
                            fn.get("arguments") or "",
                            call.get("id"),
                            fn.get("name"),
                            index,
                        )
                    )
        reason = choice.get("finish_reason")
        if reason:
            out.append(Finish(reason, index))
    if top:
        out.append(ProviderFields(None, top))
    usage = obj.get("usage")
    if usage:
        out.append(usage_from_openai(usage, convention))
    return out


def events_from_completion(obj: dict[str, Any], convention: str = "auto") -> list[Event]:
    """Translate a non-streaming ``chat.completion`` into the same events (unknown
    fields of the response, its choices and their messages as ``ProviderFields``)."""
    out: list[Event] = [
        Start(
            model=obj.get("model") or "",
            system_fingerprint=obj.get("system_fingerprint"),
            service_tier=obj.get("service_tier"),
        )
    ]
    top = _unknown(obj, _CHUNK_KNOWN)
    for choice in obj.get("choices") or ():
        index = choice.get("index") or 0
        msg = choice.get("message") or {}
        on_choice = _unknown(choice, _CHOICE_KNOWN)
        on_message = _unknown(msg, _DELTA_KNOWN) if isinstance(msg, dict) else None
        if on_choice or on_message or top:
            out.append(ProviderFields(index, top, on_choice, on_message))
            top = None
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if reasoning:
            out.append(TextDelta(reasoning, "reasoning", index))
        if msg.get("content"):
            out.append(TextDelta(msg["content"], "content", index, _logprobs(choice)))
        if msg.get("refusal"):
            out.append(TextDelta(msg["refusal"], "refusal", index))
        for i, call in enumerate(msg.get("tool_calls") or ()):
            fn = call.get("function") or {}
            out.append(
                ToolCallDelta(i, fn.get("arguments") or "", call.get("id"), fn.get("name"), index)
            )
        out.append(Finish(choice.get("finish_reason") or "stop", index))
    if top:
        out.append(ProviderFields(None, top))
    if obj.get("usage"):
        out.append(usage_from_openai(obj["usage"], convention))
    return out


def usage_from_openai(usage: dict[str, Any], reasoning: str = "auto") -> Usage:
    """OpenAI-style usage (and DeepSeek's cache fields) to our Usage, with its convention.

    OpenAI counts reasoning inside ``completion_tokens``; some providers (xAI) report
    it on top, with a ``total_tokens`` that says so. ``reasoning`` is the deployment's
    statement (``included`` / ``separate``); ``auto`` reads it from the numbers:
    separate when total = prompt + completion + reasoning ≠ prompt + completion, or,
    with no total, when the reasoning alone exceeds the completion.
    """
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    reasoning_tokens = _count(completion_details.get("reasoning_tokens"))
    reported_total = usage.get("total_tokens")
    total = None if reported_total is None else _count(reported_total)
    convention: ReasoningConvention = "included"
    if reasoning == "separate":
        convention = "separate"
    elif reasoning == "auto" and reasoning_tokens:
        if total is not None:
            plain = prompt + completion
            if total != plain and total == plain + reasoning_tokens:
                convention = "separate"
        elif reasoning_tokens > completion:
            convention = "separate"
    cached = _count(prompt_details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens"))
    extra = {k: v for k, v in usage.items() if k not in _USAGE_KNOWN}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning_tokens,
        extra=extra,
        reasoning=convention,
        provider_total=total,
    )


def _count(value: Any) -> int:
    """A token count as reported: non-negative whole numbers only (anything else is 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value or value < 0:  # NaN, negative
        return 0
    return int(min(value, _MAX_COUNT))  # absurd counts are clamped (billing caps the cost)


def error_from_event(obj: dict[str, Any], provider: str) -> UpstreamError:
    """An in-stream ``{"error": {...}}`` event."""
    err = obj.get("error")
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = err.get("code")
    client_error = isinstance(code, int) and 400 <= code < 500 and code not in (408, 409, 429)
    return UpstreamError(
        str(err.get("message") or f"provider {provider!r} reported an error"),
        status=code if client_error else 502,
        retryable=not client_error,
        code=code,
        type=str(err.get("type") or "upstream_error"),
    )


def error_from_body(status: int, raw: bytes, headers: Any, provider: str) -> UpstreamError:
    """An HTTP error answer from the upstream, mapped for the router."""
    message = ""
    err: dict[str, Any] = {}
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
            message = str(err.get("message") or "")
        elif isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            message = parsed["error"]
    except orjson.JSONDecodeError:
        message = raw[:200].decode(errors="replace")
    if status in (401, 403):
        return UpstreamError(
            f"provider {provider!r} rejected tollway's credentials (HTTP {status}); "
            "this is a gateway configuration error",
            status=502,
            retryable=True,
            misconfigured=True,
            code="upstream_auth_failed",
        )
    retry_after = _retry_after(headers.get("Retry-After") if headers is not None else None)
    if status in (408, 409, 429) or status >= 500:
        return UpstreamError(
            message or f"provider {provider!r} answered HTTP {status}",
            status=429 if status == 429 else (504 if status == 408 else 502),
            retryable=True,
            retry_after=retry_after,
            code=err.get("code"),
        )
    return UpstreamError(
        message or f"provider {provider!r} answered HTTP {status}",
        status=status,
        retryable=False,
        code=err.get("code"),
        type=str(err.get("type") or "invalid_request_error"),
        param=err.get("param"),
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import time
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
