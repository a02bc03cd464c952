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
   makes ``len()`` exact for ASCII), and the tokenizer is loaded and run only when
   that bound passes the limit, on the text not counted yet (billing's roomy
   reservation, ``BillingConfig.roomy_output_factor``, pays for several bytes per
   output token, so with it that is rare). A cumulative usage reported
   mid-stream is checked as it arrives;
3. when the limit is passed, the call is cut: the upstream is closed and every
   open choice finishes with ``"length"``.

The records are what billing prices: the usage the upstream reported for a call
that ended normally, else an estimate from the recorded text (``estimated``), at
the prices of the deployment that answered: the one its ``Start`` names, else (an
adapter that sends none) the router's choice when the first output or usage arrives. A
record is complete at any moment, so settlement never depends on the order in
which cancelled generators are finalized.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from tollway import tokens
from tollway.calls import COMPACT_AT, CUT, Budget, CallRecord
from tollway.chunks import Event, Finish, Start, StreamError, TextDelta, ToolCallDelta, Usage
from tollway.context import RequestContext
from tollway.providers.base import ChatRequest

__all__ = ["metered_call"]


async def metered_call(
    request: ChatRequest,
    ctx: RequestContext,
    budget: Budget,
    open_events: Callable[[ChatRequest], AsyncIterator[Event]],
) -> AsyncIterator[Event]:
    """The events of one upstream call, recorded and held to the budget."""
    call = await budget.open_call(request)
    events = open_events(request)
    pieces = call.pieces  # compacted in place: the list object stays the same
    append = pieces.append
    compact_at = COMPACT_AT
    seen = 0  # UTF-8 bytes of the output so far: an upper bound of its tokens
    check_at = call.floor + 1  # below this many bytes, the output is surely paid for
    finished: set[int] = set()
    try:
        async for event in events:
            kind = type(event)
            if kind is TextDelta or kind is ToolCallDelta:  # the output: recorded, bounded
                text: str = (
                    event.text  # type: ignore[union-attr]
                    if kind is TextDelta
                    else (event.name or "") + event.arguments  # type: ignore[union-attr]
                )
                choice: int = event.choice  # type: ignore[union-attr,assignment]
                if call.deployment is None:  # an adapter that sends no Start: the router's
                    call.deployment = ctx.deployment
                if choice:
                    call.add(choice, text)
                else:
                    append(text)
                    if len(pieces) >= compact_at:
                        compact_at = call.compact(0)
                seen += len(text) if text.isascii() else len(text.encode())
                if seen >= check_at:
                    check_at = _limit(call, budget, ctx) + 1  # bytes the reservation pays for
                    if seen >= check_at:  # only now may the output be past it: count
                        if not tokens.loaded():  # the first exact count: load it off the loop
                            await tokens.load()
                        check_at = call.over_limit(seen)
            elif kind is Start:
                call.deployment = ctx.deployment
                call.start_usage = event.usage  # type: ignore[union-attr]
            elif kind is Usage:
                if call.deployment is None:
                    call.deployment = ctx.deployment
                call.reported = event  # type: ignore[assignment]
                output = event.output_tokens  # type: ignore[union-attr]
                # up to the floor, surely paid for: the limit is not even worked out (≈ 10 µs)
                if (len(finished) < request.choices and output > call.floor
                        and output > _limit(call, budget, ctx)):
                    check_at = CUT
            elif kind is Finish:
                finished.add(event.choice)  # type: ignore[union-attr,arg-type]
            elif kind is StreamError:
                call.state = "failed"
            yield event
            if check_at == CUT:
                call.state = "cut"
                for choice in (0, *sorted(call.more)):  # every choice that has begun
                    if choice not in finished:
                        yield Finish("length", choice)
                return
        if call.state == "open":
            call.state = "done"
    finally:
        if call.state == "open":
            call.state = "partial"  # cancelled or closed early: estimated from what was seen
            attempts = ctx.attempts
            if call.deployment is None and attempts and attempts[-1].outcome == "abandoned":
                call.deployment = ctx.deployment  # it received the prompt before the end
        await _aclose(events)


def _limit(call: CallRecord, budget: Budget, ctx: RequestContext) -> int:
    if call.limit is None:
        if call.deployment is None:  # an adapter that sent no Start: the router's choice
            call.deployment = ctx.deployment
        call.limit = budget.output_limit(call)
    return call.limit


async def _aclose(events: Any) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
