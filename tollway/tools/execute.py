"""Running one platform-tool call and describing its outcome three ways.

The model gets ``model_text`` (a ``tool`` message), the client gets the
``PlatformToolRecord`` and, unless formatting is off, ``display_text``; the
trace gets ``trace_entry``. A call never raises: bad JSON arguments, a tool
error, a timeout or a crash all become an error outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.chunks import PlatformToolRecord
from tollway.context import RequestContext
from tollway.errors import GatewayError
from tollway.tools.config import FormatConfig
from tollway.tools.registry import Tool, ToolError

__all__ = ["Outcome", "ResultInspector", "display_text", "execute_call"]

log = logging.getLogger("tollway.tools")

ResultInspector = Callable[[str, str, RequestContext], Awaitable[str]]
"""``(tool name, result text, ctx) -> text``: e.g. a firewall; raise GatewayError to block."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call."""

    tool: Tool
    call_id: str
    arguments: str
    status: str  # "ok" | "error" | "timeout" | "invalid_arguments" | "blocked"
    model_text: str
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    def record(self) -> PlatformToolRecord:
        return PlatformToolRecord(
            name=self.tool.name,
            arguments=self.arguments,
            result=self.result if self.error is None else None,
            error=self.error,
            duration_ms=self.duration_ms,
        )

    def trace_entry(self) -> dict[str, Any]:
        """For ``ctx.tool_calls``: a digest of the arguments, never the arguments."""
        return {
            "name": self.tool.name,
            "arguments_sha256": hashlib.sha256(self.arguments.encode()).hexdigest(),
            "duration_ms": round(self.duration_ms, 3),
            "outcome": self.status,
            "error": self.error,
            "result": self.result,  # kept by traces only when bodies are opted in
        }


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [truncated, {len(text) - limit} more characters]"


def _parse_arguments(raw: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError as exc:
        raise ToolError(f"the arguments are not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ToolError("the arguments must be a JSON object")
    return parsed


async def execute_call(
    tool: Tool,
    call_id: str,
    arguments: str,
    ctx: RequestContext,
    *,
    max_result_chars: int,
    inspect: ResultInspector | None = None,
) -> Outcome:
    """Run one call under its timeout; every failure becomes an error outcome."""
    started = time.perf_counter()
    status = "ok"
    result: Any = None
    error: str | None = None
    try:
        parsed = _parse_arguments(arguments)
    except ToolError as exc:
        status, error = "invalid_arguments", str(exc)
    else:
        try:
            async with asyncio.timeout(tool.timeout):
                result = await tool.call(parsed)
        except ToolError as exc:
            status, error = "error", str(exc) or type(exc).__name__
        except TimeoutError:
            status, error = "timeout", f"the tool did not answer within {tool.timeout:g}s"
        except Exception as exc:  # a crashing tool must not break the response
            log.exception("platform tool %s crashed", tool.name)
            status, error = "error", f"the tool failed unexpectedly ({type(exc).__name__})"
    duration_ms = (time.perf_counter() - started) * 1000
    if error is not None:
        return Outcome(tool, call_id, arguments, status, f"Error: {error}", None, error,
                       duration_ms)
    text = _clip(_as_text(result), max_result_chars)
    if inspect is not None:
        try:
            inspected = await inspect(tool.name, text, ctx)
        except GatewayError as exc:
            reason = f"the result was blocked: {exc.message}"
            return Outcome(tool, call_id, arguments, "blocked", f"Error: {reason}", None,
                           reason, duration_ms)
        if inspected != text:
            text, result = inspected, inspected
    if len(_as_text(result)) > max_result_chars:
        result = text
    return Outcome(tool, call_id, arguments, status, text, result, None, duration_ms)


def display_text(outcome: Outcome, fmt: FormatConfig) -> str:
    """The human-readable line for ``delta.content`` (the template's placeholders filled)."""
    values = {
        "name": outcome.tool.name,
        "arguments": _clip(outcome.arguments, 200),
        "result": _clip(outcome.model_text, fmt.max_chars) if outcome.error is None else "",
        "error": outcome.error or "",
        "duration_ms": f"{outcome.duration_ms:.0f}",
    }
    template = fmt.result if outcome.error is None else fmt.error
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
