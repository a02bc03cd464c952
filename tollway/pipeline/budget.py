"""The budget guard: every upstream call is metered against what billing reserved.

With billing on, ``ctx.budget`` is the request's running tab (billing implements
``Budget``). ``metered_call`` wraps each upstream call (the first one and every
platform-tool round):

1. before the call, ``budget.open_call(request)`` makes the reservation cover the
   worst case of this call on top of what the request has spent so far, extending
   it if needed; when the account cannot cover it, ``PaymentRequired`` is raised
   (a 402 before the first call; the tool loop ends with a note after that);
2. while the call streams, its output is recorded in a ``CallRecord`` and held to
   ``budget.output_limit(call)`` tokens, the most the rest of the reservation pays
   for. The check is nearly free per chunk: the UTF-8 length of the text is an
   upper bound of its tokens (a token is at least one byte; ``str.isascii()``
   makes ``len()`` exact for ASCII), and the tokenizer runs only when that bound
   passes the limit, on the text not counted yet. A cumulative usage reported
   mid-stream is checked as it arrives;
3. when the limit is passed, the call is cut: the upstream is closed and every
   open choice finishes with ``"length"``.

The records are what billing prices: the usage the upstream reported for a call
that ended normally, else an estimate from the recorded text (``estimated``). A
record is complete at any moment, so settlement never depends on the order in
which cancelled generators are finalized.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any, Literal, Protocol

from tollway import tokens
from tollway.chunks import Event, Finish, Start, StreamError, TextDelta, ToolCallDelta, Usage
from tollway.config import DeploymentConfig
from tollway.context import RequestContext
from tollway.providers.base import ChatRequest

__all__ = ["Budget", "CallRecord", "estimated_usage", "metered_call"]

CallState = Literal["open", "done", "failed", "partial", "cut"]
_CUT = -1


def estimated_usage(prompt_tokens: int, text: str, reported: Usage | None) -> Usage:
    """Counted usage for ``text``, keeping whatever the upstream did report.

    Completion is the larger of the counted text and the reported output (a
    cumulative usage may have arrived before the call was cut short); the
    estimate uses OpenAI's convention (reasoning inside completion).
    """
    completion = tokens.count_text(text)
    if reported is None:
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, estimated=True)
    completion = max(completion, reported.output_tokens)
    return Usage(
        prompt_tokens=reported.prompt_tokens or prompt_tokens,
        completion_tokens=completion,
        cached_tokens=reported.cached_tokens,
        reasoning_tokens=min(reported.reasoning_tokens, completion),
        estimated=True,
        extra=reported.extra,
        cache_write_tokens=reported.cache_write_tokens,
        cache_write_1h_tokens=reported.cache_write_1h_tokens,
    )


class CallRecord:
    """One upstream call: its request, deployment, output so far and reported usage."""

    __slots__ = ("counted", "counted_upto", "deployment", "limit", "pieces", "prompt_counted",
                 "reported", "request", "state")  # fmt: skip

    def __init__(self, request: ChatRequest, prompt_counted: int) -> None:
        self.request = request
        self.prompt_counted = prompt_counted  # tollway's count of this call's prompt
        self.deployment: DeploymentConfig | None = None  # set when the call commits
        self.pieces: list[str] = []  # generated text, tool names and arguments
        self.reported: Usage | None = None
        self.state: CallState = "open"
        self.limit: int | None = None  # output tokens the reservation still pays for
        self.counted = 0  # tokens counted of pieces[:counted_upto] (segment by segment)
        self.counted_upto = 0

    def usage(self) -> Usage | None:
        """What this call costs in tokens; None if it never reached an upstream's answer."""
        if self.deployment is None:
            return None
        if self.state == "done" and self.reported is not None:
            return self.reported
        return estimated_usage(self.prompt_counted, "".join(self.pieces), self.reported)

    def over_limit(self, seen_bytes: int) -> int:
        """The next byte count to look again at, or ``_CUT`` when the limit is passed."""
        limit = self.limit
        assert limit is not None
        pieces = self.pieces
        if self.counted_upto < len(pieces):
            self.counted += tokens.count_text("".join(pieces[self.counted_upto:]))
            self.counted_upto = len(pieces)
        if self.counted > limit:  # segment sums may overcount by a token per seam: confirm
            self.counted = tokens.count_text("".join(pieces))
            if self.counted > limit:
                return _CUT
        return seen_bytes + (limit - self.counted) + 1


class Budget(Protocol):
    """Billing's running tab of one request, as the pipeline sees it."""

    async def open_call(self, request: ChatRequest) -> CallRecord:
        """Cover this call's worst case (extending the reservation) or raise PaymentRequired."""
        ...

    def output_limit(self, call: CallRecord) -> int:
        """Output tokens (all choices together) the reservation still pays for in ``call``."""
        ...

    async def reserve_extra(self, usd: Decimal) -> bool:
        """Cover ``usd`` more (platform-tool prices) before spending it; False if it cannot."""
        ...

    def usage(self) -> Usage | None:
        """The request's usage so far: every call's, summed (None before any answer)."""
        ...


async def metered_call(
    request: ChatRequest,
    ctx: RequestContext,
    budget: Budget,
    open_events: Callable[[ChatRequest], AsyncIterator[Event]],
) -> AsyncIterator[Event]:
    """The events of one upstream call, recorded and held to the budget."""
    call = await budget.open_call(request)
    events = open_events(request)
    append = call.pieces.append
    seen = 0  # UTF-8 bytes of the output so far: an upper bound of its tokens
    check_at = 0
    finished: set[int] = set()
    try:
        async for event in events:
            kind = type(event)
            if kind is TextDelta:
                text: str = event.text  # type: ignore[union-attr]
                append(text)
                seen += len(text) if text.isascii() else len(text.encode())
                if seen >= check_at:
                    check_at = _check(call, budget, ctx, seen)
            elif kind is ToolCallDelta:
                part = (event.name or "") + event.arguments  # type: ignore[union-attr]
                append(part)
                seen += len(part) if part.isascii() else len(part.encode())
                if seen >= check_at:
                    check_at = _check(call, budget, ctx, seen)
            elif kind is Start:
                call.deployment = ctx.deployment
                if event.usage is not None:  # type: ignore[union-attr]
                    call.reported = event.usage  # type: ignore[union-attr]
            elif kind is Usage:
                call.reported = event  # type: ignore[assignment]
                output = event.output_tokens  # type: ignore[union-attr]
                if len(finished) < request.choices and output > _limit(call, budget, ctx):
                    check_at = _CUT
            elif kind is Finish:
                finished.add(event.choice)  # type: ignore[union-attr]
            elif kind is StreamError:
                call.state = "failed"
            yield event
            if check_at == _CUT:
                call.state = "cut"
                for choice in range(request.choices):
                    if choice not in finished:
                        yield Finish("length", choice)
                return
        if call.state == "open":
            call.state = "done"
    finally:
        if call.state == "open":
            call.state = "partial"  # cancelled or closed early: estimated from what was seen
        await _aclose(events)


def _limit(call: CallRecord, budget: Budget, ctx: RequestContext) -> int:
    if call.limit is None:
        if call.deployment is None:  # an adapter that sent no Start: the router's choice
            call.deployment = ctx.deployment
        call.limit = budget.output_limit(call)
    return call.limit


def _check(call: CallRecord, budget: Budget, ctx: RequestContext, seen: int) -> int:
    limit = _limit(call, budget, ctx)
    if seen <= limit:
        return limit + 1  # the bound cannot pass the limit before this many bytes
    return call.over_limit(seen)


async def _aclose(events: Any) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
