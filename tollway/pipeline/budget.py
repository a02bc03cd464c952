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


def estimated_usage(prompt_tokens: int, completion_tokens: int, reported: Usage | None) -> Usage:
    """Counted usage, keeping whatever the upstream did report.

    Completion is the larger of the counted tokens and the reported output (a
    cumulative usage may have arrived before the call was cut short); the estimate
    uses OpenAI's convention (reasoning inside completion).
    """
    if reported is None:
        return Usage(
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, estimated=True
        )
    completion = max(completion_tokens, reported.output_tokens)
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
    """One upstream call: its request, deployment, output so far and reported usage.

    The output is kept per choice (text, tool names and arguments, in order):
    ``pieces`` for choice 0, ``more`` for the others, so that each choice is counted
    as the text it is.
    """

    __slots__ = ("_counts", "deployment", "floor", "limit", "more", "pieces", "prompt_counted",
                 "reported", "request", "start_usage", "state")  # fmt: skip

    def __init__(self, request: ChatRequest, prompt_counted: int) -> None:
        self.request = request
        self.prompt_counted = prompt_counted  # tollway's count of this call's prompt
        self.deployment: DeploymentConfig | None = None  # set when the call commits
        self.pieces: list[str] = []  # choice 0's output
        self.more: dict[int, list[str]] = {}  # the other choices' output
        self.reported: Usage | None = None  # the upstream's (cumulative) usage, last one
        self.start_usage: Usage | None = None  # the prompt side, when told up front
        self.state: CallState = "open"
        self.limit: int | None = None  # output tokens past which the call is cut
        self.floor = 0  # output tokens the call may surely produce (no need to look before)
        self._counts: dict[int, list[int]] = {}  # choice -> [pieces counted, tokens]

    def add(self, choice: int, text: str) -> None:
        """Record output of a choice other than 0 (choice 0 appends to ``pieces``)."""
        texts = self.more.get(choice)
        if texts is None:
            texts = self.more[choice] = []
        texts.append(text)

    def _outputs(self) -> list[tuple[int, list[str]]]:
        return [(0, self.pieces), *self.more.items()]

    def counted_output(self) -> int:
        """Output tokens of every choice, each counted as one text."""
        return sum(tokens.count_text("".join(texts)) for _, texts in self._outputs())

    def usage(self) -> Usage | None:
        """What this call costs in tokens; None if it never reached an upstream's answer."""
        if self.deployment is None:
            return None
        if self.state == "done" and self.reported is not None:
            return self.reported
        return estimated_usage(
            self.prompt_counted, self.counted_output(), self.reported or self.start_usage
        )

    def over_limit(self, seen_bytes: int) -> int:
        """The next byte count to look again at, or ``_CUT`` when the limit is passed.

        Each choice's new text is counted as one segment and added to its running
        count; segment seams may overcount by a token each, so a count past the
        limit is confirmed on the whole texts before the call is cut.
        """
        limit = self.limit
        assert limit is not None
        total = 0
        for choice, texts in self._outputs():
            state = self._counts.get(choice)
            if state is None:
                state = self._counts[choice] = [0, 0]
            if state[0] < len(texts):
                state[1] += tokens.count_text("".join(texts[state[0]:]))
                state[0] = len(texts)
            total += state[1]
        if total > limit:
            total = 0
            for choice, texts in self._outputs():
                exact = tokens.count_text("".join(texts))
                self._counts[choice] = [len(texts), exact]
                total += exact
            if total > limit:
                return _CUT
        return seen_bytes + (limit - total) + 1


class Budget(Protocol):
    """Billing's running tab of one request, as the pipeline sees it."""

    async def open_call(self, request: ChatRequest) -> CallRecord:
        """Cover this call's worst case (extending the reservation) or raise PaymentRequired."""
        ...

    def output_limit(self, call: CallRecord) -> int:
        """Output tokens (all choices together) past which ``call`` is cut: what the
        reservation still pays for, with a tolerance for tokenizers that count differently.
        Asked only once the output may exceed ``call.floor``, which ``open_call`` sets to
        what the reservation surely covers."""
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
    check_at = call.floor + 1  # below this many bytes, the output is surely paid for
    finished: set[int] = set()
    try:
        async for event in events:
            kind = type(event)
            if kind is TextDelta:
                text: str = event.text  # type: ignore[union-attr]
                if event.choice:  # type: ignore[union-attr]
                    call.add(event.choice, text)  # type: ignore[union-attr]
                else:
                    append(text)
                seen += len(text) if text.isascii() else len(text.encode())
                if seen >= check_at:
                    check_at = _check(call, budget, ctx, seen)
            elif kind is ToolCallDelta:
                part = (event.name or "") + event.arguments  # type: ignore[union-attr]
                if event.choice:  # type: ignore[union-attr]
                    call.add(event.choice, part)  # type: ignore[union-attr]
                else:
                    append(part)
                seen += len(part) if part.isascii() else len(part.encode())
                if seen >= check_at:
                    check_at = _check(call, budget, ctx, seen)
            elif kind is Start:
                call.deployment = ctx.deployment
                call.start_usage = event.usage  # type: ignore[union-attr]
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


def _check(call: CallRecord, budget: Budget, ctx: RequestContext, seen: int) -> int:
    limit = _limit(call, budget, ctx)
    if seen <= limit:
        return limit + 1  # the bound cannot pass the limit before this many bytes
    return call.over_limit(seen)


async def _aclose(events: Any) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
