"""Request and response bodies in traces, for the accounts that opt in.

``tracing.store_bodies`` (every account) or ``tracing.store_bodies_accounts``
(account ids or names) turn it on. ``BodyCapture`` plugs in through two hooks:

- a request hook, the last one before admission, copies the request as it goes
  on: the client's JSON with the messages as the request firewall left them
  (redacted, or the request was blocked and nothing is kept) and tollway's
  extension fields. Headers, and so the API key, are never part of it.
- a response stage, after the response firewall, assembles what the client is
  sent: per choice the content, reasoning and refusal text, the tool calls, the
  platform tool records and the finish reason, and an error that ended the
  stream. Streamed or not, the result is the same.

Each body is capped at ``tracing.max_body_chars`` characters of text: a string
that passes the budget is cut and says how much it lost (``…[truncated N
characters]``), and lists and objects stop once it is spent; ``truncated`` in
the stored bodies says whether anything was cut. The response is capped while
it streams, so a long answer never holds more than the cap in memory. Bodies
are stored in the trace's ``bodies`` column and returned only by
``GET /v1/traces/{id}`` of the same account (and the admin API), never in lists.

Accounts that do not opt in cost one set lookup per request; with neither
setting, nothing is installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
)
from tollway.context import RequestContext
from tollway.pipeline.compose import Stage
from tollway.tracing.config import TracingConfig

__all__ = ["BodyCapture", "Budget", "ResponseBody", "TraceBodies"]

_MAX_DEPTH = 32
_FIELD = {"content": "content", "reasoning": "reasoning_content", "refusal": "refusal"}


def _cut(kept: str, lost: int) -> str:
    return f"{kept}…[truncated {lost} characters]" if lost else kept


class Budget:
    """Characters of text a body may still keep; counts what it had to drop."""

    __slots__ = ("left", "dropped")

    def __init__(self, chars: int) -> None:
        self.left = chars
        self.dropped = 0

    def text(self, text: str) -> str:
        """As much of ``text`` as the budget allows (no marker)."""
        n = len(text)
        if n <= self.left or not n:
            self.left -= n
            return text
        keep = max(self.left, 0)
        self.left = 0
        self.dropped += n - keep
        return text[:keep]

    def value(self, value: Any, depth: int = 0) -> Any:
        """A copy of a JSON value within the budget (strings cut with a marker)."""
        if isinstance(value, str):
            kept = self.text(value)
            return _cut(kept, len(value) - len(kept))
        if isinstance(value, dict):
            if depth >= _MAX_DEPTH:
                return self._gone(1, "nested too deeply")
            out: dict[str, Any] = {}
            for i, (key, item) in enumerate(value.items()):
                if self.left <= 0:
                    out["…"] = self._gone(len(value) - i, "more keys")
                    break
                self.left -= len(str(key)) + 1
                out[str(key)] = self.value(item, depth + 1)
            return out
        if isinstance(value, list | tuple):
            if depth >= _MAX_DEPTH:
                return self._gone(1, "nested too deeply")
            items: list[Any] = []
            for i, item in enumerate(value):
                if self.left <= 0:
                    items.append(self._gone(len(value) - i, "more items"))
                    break
                self.left -= 1
                items.append(self.value(item, depth + 1))
            return items
        self.left -= 1  # a number, a boolean or null
        return value

    def _gone(self, count: int, what: str) -> str:
        self.dropped += count
        return f"…[{count} {what}]"


class ResponseBody:
    """What the client was sent, assembled event by event within a budget."""

    __slots__ = ("budget", "model", "texts", "lost", "calls", "records", "finish", "error")

    def __init__(self, chars: int) -> None:
        self.budget = Budget(chars)
        self.model: str | None = None
        self.texts: dict[tuple[int, str], list[str]] = {}
        self.lost: dict[tuple[int, str], int] = {}
        self.calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.records: dict[int, list[Any]] = {}
        self.finish: dict[int, str] = {}
        self.error: dict[str, Any] | None = None

    def add(self, event: Event) -> None:
        """Take one event of the response."""
        budget = self.budget
        if isinstance(event, TextDelta):
            where = (event.choice, event.channel)
            kept = budget.text(event.text)
            if kept:
                self.texts.setdefault(where, []).append(kept)
            if len(kept) < len(event.text):
                self.lost[where] = self.lost.get(where, 0) + len(event.text) - len(kept)
        elif isinstance(event, ToolCallDelta):
            calls = self.calls.setdefault(event.choice, {})
            call = calls.get(event.index)
            if call is None:
                call = calls[event.index] = {
                    "id": event.id, "type": "function", "function": {"name": "", "arguments": ""}}
            function = call["function"]
            if event.id and call["id"] is None:
                call["id"] = event.id
            if event.name:
                function["name"] += budget.text(event.name)
            function["arguments"] += budget.text(event.arguments)
        elif isinstance(event, PlatformToolRecord):
            self.records.setdefault(event.choice, []).append(budget.value({
                "name": event.name, "arguments": event.arguments, "result": event.result,
                "error": event.error, "duration_ms": event.duration_ms}))
        elif isinstance(event, Finish):
            self.finish[event.choice] = event.reason
        elif isinstance(event, Start):
            self.model = self.model or event.model or None
        elif isinstance(event, StreamError):
            self.error = {"message": budget.value(event.message), "type": event.type,
                          "code": event.code}

    def json(self) -> dict[str, Any]:
        """The assembled response: ``{model, choices: [{index, message, finish_reason}]}``."""
        indexes = sorted({c for c, _ in self.texts} | {c for c, _ in self.lost}
                         | set(self.calls) | set(self.records) | set(self.finish))
        choices = []
        for index in indexes:
            message: dict[str, Any] = {"role": "assistant", "content": None}
            for channel, name in _FIELD.items():
                where = (index, channel)
                if where in self.texts or where in self.lost:
                    message[name] = _cut("".join(self.texts.get(where, ())),
                                         self.lost.get(where, 0))
            if index in self.calls:
                by_index = self.calls[index]
                message["tool_calls"] = [by_index[i] for i in sorted(by_index)]
            if index in self.records:
                message["platform_tool_calls"] = self.records[index]
            choices.append({"index": index, "message": message,
                            "finish_reason": self.finish.get(index)})
        body: dict[str, Any] = {"model": self.model, "choices": choices}
        if self.error is not None:
            body["error"] = self.error
        return body


class TraceBodies:
    """One request's bodies while it runs (``RequestContext.trace_bodies``)."""

    __slots__ = ("request", "request_truncated", "response")

    def __init__(self, request: Any, request_truncated: bool, response: ResponseBody) -> None:
        self.request = request
        self.request_truncated = request_truncated
        self.response = response

    def as_json(self) -> dict[str, Any]:
        """What the trace stores in ``bodies``."""
        response = self.response
        started = bool(response.texts or response.lost or response.calls or response.records
                       or response.finish or response.error is not None)
        return {
            "request": self.request,
            "response": response.json() if started else None,
            "truncated": self.request_truncated or response.budget.dropped > 0,
        }


class BodyCapture:
    """The request hook and response stage that fill ``ctx.trace_bodies`` for opted-in accounts."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.limit = config.max_body_chars

    def wanted(self, ctx: RequestContext) -> bool:
        return self.config.stores_bodies_for(
            ctx.account_id, getattr(ctx.account, "account_name", None))

    async def capture_request(self, ctx: RequestContext) -> None:
        """A ``Gateway.request_hooks`` entry; install it after the request firewall's."""
        request = ctx.request
        if request is None or not self.wanted(ctx):
            return
        sent = dict(request.body)
        sent["messages"] = request.messages
        sent.update(request.extensions)
        budget = Budget(self.limit)
        copied = budget.value(sent)
        ctx.trace_bodies = TraceBodies(copied, budget.dropped > 0, ResponseBody(self.limit))

    def response_stage(self, ctx: RequestContext) -> Stage | None:
        """A ``Gateway.stage_factories`` entry; install it after the response firewall's."""
        bodies = ctx.trace_bodies
        if not isinstance(bodies, TraceBodies):
            return None
        add = bodies.response.add

        async def stage(events: AsyncIterator[Event], ctx: RequestContext,
                        ) -> AsyncIterator[Event]:
            try:
                async for event in events:
                    add(event)
                    yield event
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()

        return stage
