"""Bedrock Converse answers → tollway events, usage and errors.

=====================================  =======================================
ConverseStream event                   tollway event
=====================================  =======================================
first event                            ``Start(model=<deployment model>)``
``contentBlockDelta.text``             ``TextDelta(channel="content")``
``…reasoningContent.text``             ``TextDelta(channel="reasoning")``
``contentBlockStart.toolUse``          ``ToolCallDelta`` with id and name
``contentBlockDelta.toolUse.input``    ``ToolCallDelta`` arguments fragment
``messageStop.stopReason``             ``Finish``: end_turn / stop_sequence →
                                       stop, tool_use → tool_calls,
                                       max_tokens / model_context_window_
                                       exceeded → length, guardrail_intervened
                                       / content_filtered → content_filter
``metadata.usage``                     one ``Usage`` at the end
exception frames                       ``UpstreamError`` (throttling,
                                       unavailable, internal → retryable)
reasoning signatures, unknown events   ignored
=====================================  =======================================

Usage: Bedrock reports ``inputTokens`` without the cache reads and writes
(``cacheReadInputTokens``, ``cacheWriteInputTokens``) and ``totalTokens`` with
them, like Anthropic; ``prompt_tokens`` = input + cache read + cache write,
``cached_tokens`` = cache read and ``cache_write_tokens`` = cache write (priced at
the deployment's cache-write price; Bedrock's Converse usage does not split the
write tiers, so all are 5-minute writes), ``provider_total`` = ``totalTokens``.
When ``totalTokens`` shows that ``inputTokens`` already included them, they are not
added twice.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.chunks import Event, Finish, FinishReason, Start, TextDelta, ToolCallDelta, Usage
from tollway.errors import UpstreamError

__all__ = [
    "ConverseTranslator",
    "error_from_exception",
    "error_from_status",
    "events_from_converse",
    "usage_from_bedrock",
]

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# exception name (case-insensitive, "Exception" suffix dropped) → (status, retryable)
_EXCEPTIONS: dict[str, tuple[int, bool]] = {
    "throttling": (429, True),
    "servicequotaexceeded": (429, True),
    "serviceunavailable": (503, True),
    "internalserver": (502, True),
    "modelstreamerror": (502, True),
    "modelerror": (502, True),
    "modeltimeout": (504, True),
    "modelnotready": (503, True),
    "validation": (400, False),
    "resourcenotfound": (404, False),
    "conflict": (409, True),
}
_AUTH = frozenset({"accessdenied", "unrecognizedclient", "expiredtoken", "invalidsignature",
                   "missingauthenticationtoken", "incompletesignature", "signaturedoesnotmatch"})


class ConverseTranslator:
    """Incremental: one ConverseStream event in, the tollway events it implies out."""

    __slots__ = ("_blocks", "_model", "_started", "_tools", "_usage", "finished")

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._blocks: dict[int, list[Any]] = {}  # block index → [tool index, args seen]
        self._tools = 0
        self._usage: dict[str, Any] | None = None
        self.finished = False

    def feed(self, kind: str, obj: Any) -> list[Event]:
        """Translate one event (``kind`` is its ``:event-type``); malformed → upstream failure."""
        try:
            return self._feed(kind, obj)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UpstreamError("the provider sent a malformed event", status=502) from None

    def _feed(self, kind: str, obj: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(Start(model=self._model))
        if kind == "contentBlockDelta":
            delta = obj.get("delta") or {}
            if "text" in delta:
                if delta["text"]:
                    out.append(TextDelta(str(delta["text"])))
            elif "reasoningContent" in delta:
                text = (delta["reasoningContent"] or {}).get("text")
                if text:
                    out.append(TextDelta(str(text), "reasoning"))
            elif "toolUse" in delta:
                block = self._blocks.get(int(obj.get("contentBlockIndex") or 0))
                part = (delta["toolUse"] or {}).get("input")
                if block is not None and part:
                    block[1] = True
                    out.append(ToolCallDelta(block[0], str(part)))
        elif kind == "contentBlockStart":
            tool = ((obj.get("start") or {}).get("toolUse")) or None
            if isinstance(tool, dict):
                index = self._tools
                self._tools += 1
                self._blocks[int(obj.get("contentBlockIndex") or 0)] = [index, False]
                out.append(ToolCallDelta(index, "", str(tool.get("toolUseId") or ""),
                                         str(tool.get("name") or "")))
        elif kind == "contentBlockStop":
            block = self._blocks.pop(int(obj.get("contentBlockIndex") or 0), None)
            if block is not None and not block[1]:
                out.append(ToolCallDelta(block[0], "{}"))  # a tool called with no arguments
        elif kind == "messageStop":
            if not self.finished:
                self.finished = True
                out.append(Finish(_FINISH.get(str(obj.get("stopReason")), "stop")))
        elif kind == "metadata":
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self._usage = usage
        return out

    def final_usage(self) -> list[Event]:
        """The ``metadata.usage`` as a ``Usage`` (none if none was reported)."""
        try:
            return [usage_from_bedrock(self._usage)] if self._usage else []
        except (TypeError, ValueError):
            raise UpstreamError("the provider sent malformed usage", status=502) from None


def usage_from_bedrock(usage: dict[str, Any]) -> Usage:
    """Converse usage → tollway usage (see the module docstring)."""
    given = int(usage.get("inputTokens") or 0)
    output = int(usage.get("outputTokens") or 0)
    read = int(usage.get("cacheReadInputTokens") or 0)
    write = int(usage.get("cacheWriteInputTokens") or 0)
    total = usage.get("totalTokens")
    included = isinstance(total, int) and (read or write) and total == given + output
    prompt = given if included else given + read + write
    return Usage(prompt_tokens=prompt, completion_tokens=output, cached_tokens=read,
                 cache_write_tokens=write,
                 provider_total=total if isinstance(total, int) else None)


def events_from_converse(obj: Any, model: str) -> list[Event]:
    """A non-streaming ``Converse`` response → the same events a stream would give."""
    try:
        return _events_from_converse(obj, model)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise UpstreamError("the provider sent a malformed response", status=502) from None


def _events_from_converse(obj: dict[str, Any], model: str) -> list[Event]:
    out: list[Event] = [Start(model=model)]
    message = (obj.get("output") or {}).get("message") or {}
    tools = 0
    for block in message.get("content") or ():
        if block.get("text"):
            out.append(TextDelta(str(block["text"])))
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if text:
                out.append(TextDelta(str(text), "reasoning"))
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            out.append(ToolCallDelta(tools, orjson.dumps(use.get("input") or {}).decode(),
                                     str(use.get("toolUseId") or ""), str(use.get("name") or "")))
            tools += 1
    out.append(Finish(_FINISH.get(str(obj.get("stopReason")), "stop")))
    if isinstance(obj.get("usage"), dict):
        out.append(usage_from_bedrock(obj["usage"]))
    return out


def _kind(name: str) -> str:
    name = name.split(":", 1)[0].rsplit("#", 1)[-1].lower()
    return name.removesuffix("exception")


def error_from_exception(name: str, message: str, provider: str,
                         status: int | None = None) -> UpstreamError:
    """An AWS error (a stream exception frame or an HTTP error) → ``UpstreamError``."""
    kind = _kind(name)
    if kind in _AUTH or status in (401, 403):
        return UpstreamError(
            f"provider {provider!r} rejected tollway's credentials ({name or status}); "
            "this is a gateway configuration error",
            status=502,
            retryable=True,
            misconfigured=True,
            code="upstream_auth_failed",
        )
    mapped, retryable = _EXCEPTIONS.get(kind, (0, False))
    if not mapped:
        http = status or 502
        retryable = http in (408, 409, 424, 429) or http >= 500
        mapped = http if not retryable else (429 if http == 429 else 502)
    message = message or f"provider {provider!r} failed: {name or status}"
    if retryable:
        return UpstreamError(message, status=mapped, retryable=True, code=name or None)
    return UpstreamError(message, status=mapped, retryable=False, code=name or None,
                         type="invalid_request_error")


def error_from_status(status: int, raw: bytes, headers: Any, provider: str) -> UpstreamError:
    """An HTTP error answer: ``x-amzn-ErrorType`` names it, the body has ``message``."""
    name = str(headers.get("x-amzn-ErrorType") or "") if headers is not None else ""
    message = ""
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or parsed.get("Message") or "")
            name = name or str(parsed.get("__type") or "")
    except orjson.JSONDecodeError:
        message = raw[:200].decode(errors="replace")
    return error_from_exception(name, message, provider, status)
