"""The platform-tool loop: execute the model's platform calls inside one response.

``run_with_tools`` wraps the router's ``call_model`` (one upstream round). Each
round's text and the client's own tool calls stream through as they arrive;
calls to platform tools are captured instead. When a round ends with platform
calls, they run in parallel, each shows up as a formatted ``TextDelta`` (unless
formatting is off) and a ``PlatformToolRecord``, the assistant's calls and the
results are appended to the conversation, and the model is called again.

Endings: no platform call → the round's own finish; platform and client calls
in one turn → the platform calls run, the client's are returned with
``finish_reason: tool_calls``; more rounds than ``max_rounds`` → a note and
``finish_reason: length``; a round that itself ended with ``length`` (its output
cap, or its budget) → that finish, its platform calls are not run. Usage is summed
over rounds into one final event.

Money (billing on, ``ctx.budget``): before the platform calls of a round run, the
reservation is extended to cover their prices, and every further model round is
covered by the budget guard before it starts (``tollway.pipeline.budget``). When
the account cannot cover either, the loop ends with a note and
``finish_reason: length``, billed for what ran.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

from tollway import tokens
from tollway.calls import estimated_usage
from tollway.chunks import Event, Finish, Start, StreamError, TextDelta, ToolCallDelta, Usage
from tollway.context import RequestContext
from tollway.errors import GatewayError, InvalidRequest, PaymentRequired
from tollway.providers.base import ChatRequest
from tollway.tools.config import ToolsConfig
from tollway.tools.execute import Outcome, ResultInspector, display_text, execute_call
from tollway.tools.registry import Tool

__all__ = ["CallModel", "add_usage", "attach_platform_tools", "run_with_tools", "tool_prices"]

CallModel = Callable[[ChatRequest], AsyncIterator[Event]]

ROUND_LIMIT_NOTE = (
    "\n\n[tollway: stopped after {rounds} round(s) of platform tool calls; "
    "the model asked for more. Raise tools.max_rounds or simplify the request.]"
)
BALANCE_NOTE = (
    "\n\n[tollway: stopped after {rounds} round(s) of platform tool calls; the account's "
    "available balance cannot cover another round. Add credit and ask again.]"
)


@dataclasses.dataclass(slots=True)
class _Call:
    """One tool call of the round, assembled from its fragments."""

    id: str | None = None
    name: str | None = None
    arguments: list[str] = dataclasses.field(default_factory=list)
    kind: str | None = None  # "platform" | "client", once the name is known
    client_index: int = 0


class _Round:
    """What one upstream round produced: text, calls, finish, usage."""

    def __init__(self, platform: dict[str, Tool]) -> None:
        self.platform = platform
        self.calls: dict[int, _Call] = {}
        self.text: list[str] = []
        self.finish: Finish | None = None
        self.usage: Usage | None = None
        self.client_calls = 0
        self.started = False  # a Start of this round was seen

    def on_delta(self, delta: ToolCallDelta) -> ToolCallDelta | None:
        """Capture a fragment; return what to forward to the client, if anything."""
        call = self.calls.get(delta.index)
        if call is None:
            call = self.calls[delta.index] = _Call()
        if delta.id and call.id is None:
            call.id = delta.id
        if delta.name and call.name is None:
            call.name = delta.name
        call.arguments.append(delta.arguments)
        if call.kind is None:
            if call.name is None:
                return None  # buffer until the name tells whose call it is
            if call.name in self.platform:
                call.kind = "platform"
                return None
            return self._claim_for_client(call)
        if call.kind == "client":
            return dataclasses.replace(delta, index=call.client_index)
        return None

    def _claim_for_client(self, call: _Call) -> ToolCallDelta:
        """The client's call: renumbered densely, everything buffered so far in one fragment."""
        call.kind = "client"
        call.client_index = self.client_calls
        self.client_calls += 1
        return ToolCallDelta(call.client_index, "".join(call.arguments), call.id, call.name or "")

    def flush_unnamed(self) -> list[ToolCallDelta]:
        """Calls whose name never came are not ours: hand them to the client."""
        return [self._claim_for_client(c) for c in self.calls.values() if c.kind is None]

    def platform_calls(self, round_no: int) -> list[tuple[str, Tool, str]]:
        """(call id, tool, raw arguments) for each platform call, in index order."""
        out = []
        for index in sorted(self.calls):
            call = self.calls[index]
            if call.kind == "platform" and call.name is not None:
                call_id = call.id or f"call_tollway_{round_no}_{index}"
                call.id = call_id
                out.append((call_id, self.platform[call.name], "".join(call.arguments)))
        return out

    def estimated_usage(self, request: ChatRequest) -> Usage:
        """Counted usage for a round whose upstream reported none."""
        generated = "".join(self.text) + "".join(
            (c.name or "") + "".join(c.arguments) for c in self.calls.values()
        )
        prompt = tokens.count_prompt_tokens(request.messages, request.tools)
        return estimated_usage(prompt, tokens.count_text(generated), None)


def tool_prices(calls: list[tuple[str, Tool, str]]) -> Decimal:
    """What platform calls cost if every one succeeds."""
    return sum((tool.price_usd or Decimal(0) for _, tool, _ in calls), Decimal(0))


def add_usage(a: Usage | None, b: Usage) -> Usage:
    """The sum of two rounds' usage (numbers in ``extra`` summed too)."""
    return b if a is None else a.plus(b)


_ATTACHED = "platform_tools_attached"


def attach_platform_tools(request: ChatRequest, tools: list[Tool]) -> dict[str, Tool]:
    """Check the request can take platform tools and add their schemas to ``tools``.

    Done once per request (the tools feature does it before admission, so that the
    reservation counts the schemas the upstream will read); later calls only map
    function names to tools.
    """
    platform = {tool.function_name: tool for tool in tools}
    if request.extensions.get(_ATTACHED):
        return platform
    n = request.body.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("platform_tools cannot be combined with n > 1.", param="n")
    client = {
        (entry.get("function") or {}).get("name")
        for entry in request.tools or []
        if isinstance(entry, dict)
    }
    clash = sorted(name for name in client if name in platform)
    if clash:
        raise InvalidRequest(
            f"Your tools {', '.join(clash)} have the same name as platform tools.", param="tools"
        )
    request.tools = list(request.tools or []) + [tool.schema() for tool in tools]
    if request.anthropic is not None:  # the loop writes the stream, not the upstream
        request.anthropic.raw_events = False
    request.messages = list(request.messages)
    request.extensions[_ATTACHED] = True
    return platform


def _continue(request: ChatRequest, round_: _Round, outcomes: list[Outcome]) -> None:
    """Append the assistant's platform calls and their results to the conversation."""
    request.messages.append({
        "role": "assistant",
        "content": "".join(round_.text) or None,
        "tool_calls": [
            {"id": o.call_id, "type": "function",
             "function": {"name": o.tool.function_name, "arguments": o.arguments}}
            for o in outcomes
        ],
    })
    for outcome in outcomes:
        request.messages.append(
            {"role": "tool", "tool_call_id": outcome.call_id, "content": outcome.model_text}
        )
    if request.body.get("tool_choice") not in (None, "auto", "none"):
        # a forced call was made; let the model answer now
        request.body = {**request.body, "tool_choice": "auto"}


def _report(ctx: RequestContext, outcomes: list[Outcome], round_no: int) -> None:
    """Trace each call and add the per-call prices of successful ones."""
    for outcome in outcomes:
        ctx.tool_calls.append({**outcome.trace_entry(), "round": round_no})
        if outcome.status == "ok" and outcome.tool.price_usd:
            ctx.extra_usage_cost = (ctx.extra_usage_cost or Decimal(0)) + outcome.tool.price_usd


async def run_with_tools(
    request: ChatRequest,
    tools: list[Tool],
    call_model: CallModel,
    ctx: RequestContext,
    config: ToolsConfig,
    *,
    inspect: ResultInspector | None = None,
) -> AsyncIterator[Event]:
    """The model's events with platform tools executed inside the response."""
    platform = attach_platform_tools(request, tools)
    total: Usage | None = None
    rounds_run = 0
    executed = 0
    started = False
    while True:
        round_ = _Round(platform)
        stream = call_model(request)
        rounds_run += 1
        try:
            async for event in stream:
                kind = type(event)
                if kind is ToolCallDelta:
                    forward = round_.on_delta(event)  # type: ignore[arg-type]
                    if forward is not None:
                        yield forward
                elif kind is Usage:
                    round_.usage = event  # type: ignore[assignment]
                elif kind is Finish and event.choice == 0:  # type: ignore[union-attr]
                    round_.finish = event  # type: ignore[assignment]
                elif kind is Start:
                    # the first call's Start, and a later Start of the same call (a
                    # relabel: the served model named late or changed by the provider)
                    if not started or round_.started:
                        started = True
                        yield event
                    round_.started = True
                elif kind is StreamError:
                    if round_.usage is not None or total is not None:
                        yield add_usage(total, round_.usage or Usage())
                    yield event
                    return
                else:
                    if kind is TextDelta and event.channel == "content":  # type: ignore[union-attr]
                        round_.text.append(event.text)  # type: ignore[union-attr]
                    yield event
        except PaymentRequired:
            if executed == 0:
                raise  # before anything was sent: 402
            yield TextDelta(BALANCE_NOTE.format(rounds=executed))
            yield Finish("length")
            if total is not None:
                yield total
            return
        except GatewayError as exc:
            if executed == 0:
                raise  # before anything was sent: the router's error is the response
            if total is not None:
                yield total
            yield StreamError(exc.status, exc.message, exc.type, exc.code)
            return
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()
        for forward in round_.flush_unnamed():
            yield forward
        calls = round_.platform_calls(rounds_run)
        if rounds_run == 1 and not calls:  # nothing of ours happened: the round as it was
            if round_.finish is not None:
                yield round_.finish
            if round_.usage is not None:
                yield round_.usage
            return
        total = add_usage(total, round_.usage or round_.estimated_usage(request))
        if not calls:
            if round_.finish is not None:
                yield round_.finish
            yield total
            return
        if round_.finish is not None and round_.finish.reason == "length":
            yield round_.finish  # cut short (cap or budget): its calls may be incomplete
            yield total
            return
        if executed >= config.max_rounds:
            yield TextDelta(ROUND_LIMIT_NOTE.format(rounds=executed))
            yield Finish("length")
            yield total
            return
        budget = ctx.budget
        if budget is not None:
            price = tool_prices(calls)
            if price and not await budget.reserve_extra(price):
                yield TextDelta(BALANCE_NOTE.format(rounds=executed))
                yield Finish("length")
                yield total
                return
        outcomes = list(await asyncio.gather(*(
            execute_call(tool, call_id, arguments, ctx,
                         max_result_chars=config.max_result_chars, inspect=inspect)
            for call_id, tool, arguments in calls
        )))
        executed += 1
        _report(ctx, outcomes, rounds_run)
        for outcome in outcomes:
            if config.format.enabled:
                yield TextDelta(display_text(outcome, config.format))
            yield outcome.record()
        if round_.client_calls:
            yield Finish("tool_calls")
            yield total
            return
        _continue(request, round_, outcomes)
