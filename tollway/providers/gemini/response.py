"""Gemini ``GenerateContentResponse`` objects → tollway events, usage and errors.

================================  ============================================
Gemini                            tollway event
================================  ============================================
first response object             ``Start(model=modelVersion)``
``text`` part                     ``TextDelta(channel="content")``
``text`` part with ``thought``    ``TextDelta(channel="reasoning")``
``functionCall`` part             one whole ``ToolCallDelta`` (index 0, 1, …
                                  per candidate; the id carries the part's
                                  ``thoughtSignature``, see ``request.py``)
``finishReason``                  ``Finish``: STOP → stop (tool_calls when the
                                  candidate called functions), MAX_TOKENS →
                                  length, SAFETY / RECITATION / BLOCKLIST /
                                  PROHIBITED_CONTENT / SPII / IMAGE_SAFETY… →
                                  content_filter, anything else → stop
``promptFeedback.blockReason``    ``UpstreamError`` 400 ``content_filter`` naming
                                  the reason (the prompt was blocked; not
                                  retried elsewhere)
``usageMetadata`` (cumulative)    one ``Usage`` after the last ``Finish``
``{"error": …}``                  ``UpstreamError`` (see ``error_from_status``)
================================  ============================================

Usage: ``prompt_tokens`` = promptTokenCount + toolUsePromptTokenCount;
``cached_tokens`` = cachedContentTokenCount (priced at the cached price);
``reasoning_tokens`` = thoughtsTokenCount. Gemini reports thinking *outside*
``candidatesTokenCount``; tollway uses OpenAI's convention (``reasoning="included"``),
so ``completion_tokens`` = candidatesTokenCount + thoughtsTokenCount and thinking is
billed at the output price once; ``provider_total`` keeps Gemini's
``totalTokenCount`` (which equals prompt + completion).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from tollway.chunks import Event, Finish, FinishReason, Start, TextDelta, ToolCallDelta, Usage
from tollway.errors import UpstreamError
from tollway.providers.gemini.request import tool_call_id

__all__ = [
    "CandidateTranslator",
    "error_from_response",
    "error_from_status",
    "finish_reason",
    "usage_from_gemini",
]

_FILTERED = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE",
})
# google.rpc status → (status tollway reports, retryable)
_STATUS: dict[str, tuple[int, bool]] = {
    "INVALID_ARGUMENT": (400, False),
    "FAILED_PRECONDITION": (400, False),
    "OUT_OF_RANGE": (400, False),
    "NOT_FOUND": (404, False),
    "RESOURCE_EXHAUSTED": (429, True),
    "ABORTED": (502, True),
    "INTERNAL": (502, True),
    "UNKNOWN": (502, True),
    "UNAVAILABLE": (503, True),
    "DEADLINE_EXCEEDED": (504, True),
    "CANCELLED": (502, True),
}
_AUTH_REASONS = frozenset({
    "API_KEY_INVALID", "API_KEY_EXPIRED", "ACCESS_TOKEN_EXPIRED", "SERVICE_DISABLED",
    "CONSUMER_INVALID", "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
})
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def finish_reason(native: str, called_functions: bool) -> FinishReason:
    """A Gemini ``finishReason`` → OpenAI's."""
    if native == "MAX_TOKENS":
        return "length"
    if native in _FILTERED:
        return "content_filter"
    return "tool_calls" if called_functions else "stop"


class CandidateTranslator:
    """Incremental: one response object in, the events it implies out.

    ``finish()`` at the end of the answer gives the final ``Usage`` (none if the
    upstream reported none, so the meter estimates) and says whether every
    candidate finished (a stream without a finish reason was cut short).
    """

    __slots__ = ("_calls", "_finished", "_provider", "_started", "_usage")

    def __init__(self, provider: str = "gemini") -> None:
        self._provider = provider
        self._started = False
        self._usage: dict[str, Any] | None = None
        self._calls: dict[int, int] = {}  # candidate → function calls so far
        self._finished: set[int] = set()

    def feed(self, obj: Any, fallback_model: str = "") -> list[Event]:
        """Translate one ``GenerateContentResponse``; a malformed one is an upstream failure."""
        try:
            return self._feed(obj, fallback_model)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                f"provider {self._provider!r} sent a malformed response object", status=502
            ) from None

    def _feed(self, obj: dict[str, Any], fallback_model: str) -> list[Event]:
        if "error" in obj:
            raise error_from_response(obj, 502, self._provider)
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(Start(model=str(obj.get("modelVersion") or fallback_model)))
        usage = obj.get("usageMetadata")
        if isinstance(usage, dict):
            self._usage = usage
        for candidate in obj.get("candidates") or ():
            self._candidate(candidate, out)
        feedback = obj.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason") and not obj.get(
            "candidates"
        ):
            raise UpstreamError(
                f"provider {self._provider!r} blocked the prompt "
                f"(blockReason: {feedback['blockReason']})",
                status=400,
                retryable=False,  # a policy decision: another deployment must not get round it
                code="content_filter",
                type="invalid_request_error",
                param="messages",
            )
        return out

    def _candidate(self, candidate: dict[str, Any], out: list[Event]) -> None:
        choice = int(candidate.get("index") or 0)
        for part in (candidate.get("content") or {}).get("parts") or ():
            text = part.get("text")
            if text:
                out.append(TextDelta(text, "reasoning" if part.get("thought") else "content",
                                     choice))
                continue
            call = part.get("functionCall")
            if isinstance(call, dict):
                index = self._calls.get(choice, 0)
                self._calls[choice] = index + 1
                base = str(call.get("id") or f"call_{secrets.token_hex(12)}")
                out.append(ToolCallDelta(
                    index,
                    orjson.dumps(call.get("args") or {}).decode(),
                    tool_call_id(base, part.get("thoughtSignature")),
                    str(call.get("name") or ""),
                    choice,
                ))
        native = candidate.get("finishReason")
        if native and native != "FINISH_REASON_UNSPECIFIED" and choice not in self._finished:
            self._finished.add(choice)
            out.append(Finish(finish_reason(str(native), choice in self._calls), choice))

    @property
    def finished(self) -> bool:
        return bool(self._finished)

    def final_usage(self) -> list[Event]:
        """The last ``usageMetadata`` as a ``Usage`` (none if none was reported)."""
        try:
            return [usage_from_gemini(self._usage)] if self._usage else []
        except (TypeError, ValueError):
            raise UpstreamError(
                f"provider {self._provider!r} sent malformed usage", status=502
            ) from None


def usage_from_gemini(meta: dict[str, Any]) -> Usage:
    """``usageMetadata`` → tollway usage (OpenAI's convention: thinking inside completion)."""
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    total = meta.get("totalTokenCount")
    return Usage(
        prompt_tokens=int(meta.get("promptTokenCount") or 0)
        + int(meta.get("toolUsePromptTokenCount") or 0),
        completion_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
        reasoning="included",
        provider_total=int(total) if total is not None else None,
    )


def error_from_status(status: int, raw: bytes, headers: Any, provider: str) -> UpstreamError:
    """An HTTP error answer (``{"error": {code, message, status, details}}``)."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed:  # the JSON-array stream form wraps errors too
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        parsed = {"error": {"message": raw[:200].decode(errors="replace")}}
    return error_from_response(parsed, status, provider)


def error_from_response(obj: dict[str, Any], status: int, provider: str) -> UpstreamError:
    """A Google error object → ``UpstreamError`` with the router's verdict."""
    err = obj.get("error")
    if not isinstance(err, dict):
        err = {"message": str(err)}
    code = err.get("code")
    if isinstance(code, int) and code >= 400:
        status = code
    rpc = str(err.get("status") or "")
    raw_details = err.get("details")
    details: list[Any] = raw_details if isinstance(raw_details, list) else []
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")}
    message = str(err.get("message") or f"provider {provider!r} answered HTTP {status}")
    if status in (401, 403) or rpc in ("UNAUTHENTICATED", "PERMISSION_DENIED") or (
        reasons & _AUTH_REASONS
    ):
        return UpstreamError(
            f"provider {provider!r} rejected tollway's credentials "
            f"({rpc or f'HTTP {status}'}); this is a gateway configuration error",
            status=502,
            retryable=True,
            misconfigured=True,
            code="upstream_auth_failed",
        )
    mapped, retryable = _STATUS.get(rpc, (0, False))
    if not mapped:
        retryable = status in (408, 409, 429) or status >= 500
        mapped = status if not retryable else (429 if status == 429 else 502)
    if retryable:
        return UpstreamError(
            message,
            status=mapped,
            retryable=True,
            retry_after=_retry_delay(details),
            code=rpc or None,
        )
    return UpstreamError(
        message,
        status=mapped if mapped < 500 else 400,
        retryable=False,
        code=rpc or None,
        type="invalid_request_error",
    )


def _retry_delay(details: list[Any]) -> float | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay") or ""))
            if match:
                return float(match.group(1))
    return None
