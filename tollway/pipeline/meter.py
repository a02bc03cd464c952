"""The usage meter: the final usage of every response, real or counted.

Upstream usage may arrive as a separate ``choices: []`` chunk, on the finish
chunk, or cumulatively on every chunk: adapters turn each into a ``Usage`` event
and the last one wins. If the upstream reported none, or the stream was cut
short (client gone, upstream died), the completion is counted with the offline
tokenizer and the usage is marked estimated. The meter swallows upstream
``Usage`` events and emits exactly one at the end, priced by ``pricer``. It also
records provider blocks (``ProviderBlock``, swallowed) and a served model named by
a ``Start`` in ``ctx``.

With billing on, the request's budget recorded every upstream call
(``tollway.pipeline.budget``): the final usage is theirs, summed, so that what the
client sees, what the ledger debits and what the trace shows are one figure; the
meter then keeps no copy of the text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from tollway import tokens
from tollway.calls import COMPACT_AT, estimated_usage, next_compaction
from tollway.chunks import (
    Event,
    Finish,
    ProviderBlock,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.context import RequestContext
from tollway.pipeline.compose import Stage

__all__ = ["Pricer", "estimate_usage", "usage_meter"]

Pricer = Callable[[Usage, RequestContext], dict[str, Any] | None]


def estimate_usage(ctx: RequestContext, generated: list[str], reported: Usage | None) -> Usage:
    """Counted usage for what was generated; keeps real prompt figures when known."""
    request = ctx.request
    prompt = (
        reported.prompt_tokens
        if reported and reported.prompt_tokens
        else (tokens.count_prompt_tokens(request.messages, request.tools) if request else 0)
    )
    return estimated_usage(prompt, tokens.count_text("".join(generated)), reported)


def usage_meter(pricer: Pricer | None = None) -> Stage:
    """Build the meter stage; ``pricer`` adds the cost figures to the usage."""

    async def meter(events: AsyncIterator[Event], ctx: RequestContext) -> AsyncIterator[Event]:
        generated: list[str] = []
        append = generated.append
        compact_at = COMPACT_AT
        # with billing, every upstream call's text is recorded by its budget, whose
        # usage is the final one: the meter keeps a copy only without a budget
        record = ctx.budget is None
        reported: Usage | None = None
        complete = False
        try:
            async for event in events:
                if isinstance(event, TextDelta | ToolCallDelta):
                    if record:
                        append(
                            event.text
                            if isinstance(event, TextDelta)
                            else (event.name or "") + event.arguments
                        )
                        if len(generated) >= compact_at:  # text, not a string per chunk
                            generated[:] = ["".join(generated)]
                            compact_at = next_compaction(len(generated[0]))
                elif isinstance(event, Usage):
                    reported = event
                    continue
                elif isinstance(event, Finish):
                    ctx.finish_reasons[event.choice] = event.reason
                elif isinstance(event, Start):
                    if event.model:  # a model named late (see ChunkReader) relabels
                        ctx.served_model = event.model
                elif isinstance(event, ProviderBlock):
                    ctx.provider_blocks.append({"type": event.type, "block": event.block})
                    continue
                elif isinstance(event, StreamError):
                    ctx.partial = True
                    ctx.usage = _final(ctx, generated, reported, pricer, partial=True)
                    yield event
                    return
                yield event
            complete = True
            ctx.mark("last_token")
            if reported is None and not tokens.loaded():
                await tokens.load()  # no usage reported: it is counted (load off the loop)
            ctx.usage = _final(ctx, generated, reported, pricer, partial=False)
            yield ctx.usage
        finally:
            if not complete and ctx.usage is None:  # cancelled or failed mid-way
                ctx.partial = True
                ctx.usage = _final(ctx, generated, reported, pricer, partial=True)

    return meter


def _final(
    ctx: RequestContext,
    generated: list[str],
    reported: Usage | None,
    pricer: Pricer | None,
    *,
    partial: bool,
) -> Usage:
    budget = ctx.budget
    usage = budget.usage() if budget is not None else None
    if usage is None:
        usage = (
            reported
            if reported is not None and not partial
            else estimate_usage(ctx, generated, reported)
        )
    if pricer is not None:
        cost = pricer(usage, ctx)
        if cost is not None:
            usage = usage.with_cost(cost)
    return usage
