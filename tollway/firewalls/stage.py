"""The response firewall stage: scan streamed text with a bounded hold-back.

One incremental filter per (choice, channel) and per (choice, tool call index)
holds back only what a detector might still match (see ``firewalls/scanner.py``).
``Finish`` of a choice flushes that choice's filters first; the end of the
stream flushes the rest. On ``block`` the client gets the text before the match,
then ``Finish(reason="content_filter")`` for every open choice, and the stage
stops pulling: its ``finally`` closes the upstream iterator. An upstream error
(``StreamError``) is an end too: held text is scanned and released first, then the
error follows; if that text completes a blocked match, the block wins: the text
before it, ``content_filter`` for every open choice and no error event (the request
does not end with that error: the route attempt keeps it, and the response is marked
partial). Upstream events passed on verbatim (``Raw``) are dropped unless the
policy only monitors (thinking signatures, which carry no text, are kept), so the
client only ever sees text the firewall let through. Verdicts
(``{detector, action, where, count}``) are added to ``ctx.firewall_verdicts``
even when the client disconnects. A monitor-only policy passes events through
untouched and only counts. Log probabilities survive only on deltas the
firewall did not re-cut (they could otherwise reveal redacted text). For the same
reason a policy that may rewrite text drops the provider fields of choices and
deltas (``ProviderFields.on_choice`` / ``on_delta``, e.g. annotations quoting the
text); a chunk's top-level provider fields pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tollway.chunks import (
    Event,
    Finish,
    ProviderFields,
    Raw,
    StreamError,
    TextDelta,
    ToolCallDelta,
)
from tollway.context import RequestContext
from tollway.firewalls.policy import CompiledPolicy
from tollway.firewalls.request import merge_verdicts, verdicts_for
from tollway.firewalls.scanner import StreamFilter
from tollway.pipeline.compose import Stage

__all__ = ["response_firewall"]

_CHANNEL_ORDER = ("reasoning", "content", "refusal")


def response_firewall(policy: CompiledPolicy) -> Stage:
    """A stage applying ``policy`` to response text, reasoning and tool arguments."""
    scope = policy.config.response
    enabled = {"content": scope.content, "refusal": scope.content, "reasoning": scope.reasoning}
    tools_on = scope.tool_arguments

    def stage(source: AsyncIterator[Event], ctx: RequestContext) -> AsyncIterator[Event]:
        if not policy.on_response or not (any(enabled.values()) or tools_on):
            return source
        return _run(policy, enabled, tools_on, source, ctx, _read_whole(policy, ctx))

    return stage


def _read_whole(policy: CompiledPolicy, ctx: RequestContext) -> bool:
    """Whether the response's text may be read only at its end (``StreamFilter``'s
    ``whole``): the policy only counts (the client gets every event as it comes), or
    nobody sees the text before the response is complete (not streamed), no platform
    tool runs between its parts (a block stops the tool loop before its next round, as
    when streamed), and it carries no log probabilities (which only uncut deltas keep)."""
    if policy.monitor_only:
        return True
    request = ctx.request
    return (request is not None and not request.stream and not ctx.platform_tools
            and not request.body.get("logprobs"))


async def _run(
    policy: CompiledPolicy,
    enabled: dict[str, bool],
    tools_on: bool,
    source: AsyncIterator[Event],
    ctx: RequestContext,
    whole: bool = False,
) -> AsyncIterator[Event]:
    scanner = policy.scanner
    passthrough = policy.monitor_only
    texts: dict[tuple[int, str], StreamFilter] = {}
    tools: dict[tuple[int, int], StreamFilter] = {}
    open_choices: dict[int, None] = {}

    def flush_choice(choice: int) -> tuple[list[Event], str | None]:
        """Release what the choice's filters hold; the blocking detector, if any."""
        out: list[Event] = []
        for channel in _CHANNEL_ORDER:
            f = texts.get((choice, channel))
            if f is not None:
                text = f.flush()
                if text and not passthrough:
                    out.append(TextDelta(text, channel, choice))  # type: ignore[arg-type]
                if f.blocked:
                    return out, f.blocked
        for (c, index), f in sorted(tools.items()):
            if c == choice:
                args = f.flush()
                if args and not passthrough:
                    out.append(ToolCallDelta(index, args, choice=choice))
                if f.blocked:
                    return out, f.blocked
        return out, None

    def cut(choice: int) -> list[Event]:
        """Finish every open choice with content_filter (the blocked one included)."""
        open_choices.setdefault(choice, None)
        return [Finish("content_filter", c) for c in open_choices]

    def end() -> tuple[list[Event], bool]:
        """Release what every open choice holds; on a block, cut them all (True)."""
        out: list[Event] = []
        for choice in list(open_choices):
            released, blocked = flush_choice(choice)
            out += released
            if blocked:
                return out + cut(choice), True
        return out, False

    def opened(table: dict[Any, Any], key: tuple[int, Any]) -> Any:
        """A new filter for one text channel or tool call; its choice is now open."""
        f = table[key] = scanner.stream(whole, keep=not passthrough)
        open_choices.setdefault(key[0], None)
        return f

    try:
        async for ev in source:
            kind = type(ev)
            if kind is TextDelta:
                assert isinstance(ev, TextDelta)
                if not enabled[ev.channel]:
                    yield ev
                    continue
                f = texts.get((ev.choice, ev.channel)) or opened(texts, (ev.choice, ev.channel))
                text = f.feed(ev.text)
                if passthrough:
                    yield ev
                    continue
                if text:
                    yield ev if text == ev.text else TextDelta(text, ev.channel, ev.choice)
                if f.blocked:
                    for e in cut(ev.choice):
                        yield e
                    return
            elif kind is ToolCallDelta:
                assert isinstance(ev, ToolCallDelta)
                if not tools_on:
                    yield ev
                    continue
                f = tools.get((ev.choice, ev.index)) or opened(tools, (ev.choice, ev.index))
                args = f.feed(ev.arguments)
                if passthrough:
                    yield ev
                    continue
                if args == ev.arguments:
                    yield ev
                elif args or ev.id is not None or ev.name is not None:
                    yield ToolCallDelta(ev.index, args, ev.id, ev.name, ev.choice)
                if f.blocked:
                    for e in cut(ev.choice):
                        yield e
                    return
            elif kind is Finish:
                assert isinstance(ev, Finish)
                released, blocked = flush_choice(ev.choice)
                for e in released:
                    yield e
                if blocked:
                    for e in cut(ev.choice):
                        yield e
                    return
                open_choices.pop(ev.choice, None)
                yield ev
            elif kind is Raw:
                # content may change: the encoder writes it from the events; a thinking
                # signature carries no text and is kept
                if passthrough or ev.detail == "signature_delta":  # type: ignore[union-attr]
                    yield ev
            elif kind is ProviderFields and not passthrough:
                assert isinstance(ev, ProviderFields)
                if ev.on_choice or ev.on_delta:
                    if ev.chunk:
                        yield ProviderFields(ev.choice, ev.chunk)
                    continue
                yield ev
            elif kind is StreamError:
                # nothing follows an error: what is held is decided as at a normal end
                released, cut_off = end()
                for e in released:
                    yield e
                if cut_off:  # the block wins: a blocked response, the error noted
                    assert isinstance(ev, StreamError)
                    _note_error(ctx, ev)
                else:
                    yield ev
                return
            else:
                yield ev
        released, _blocked = end()
        for e in released:
            yield e
    finally:
        filters = [*texts.values(), *tools.values()]
        if whole:  # cut short (the client left): what a streamed reading had found by now
            for f in filters:
                f.settle()
        _record(ctx, scanner, filters)
        aclose: Any = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def _note_error(ctx: RequestContext, error: StreamError) -> None:
    """The block won over an upstream error: the client is not told of it, so it is not
    the error the request ends with (its attempt keeps it); the output was cut short."""
    ctx.partial = True
    if ctx.error == error.message and ctx.status == error.status:
        ctx.status, ctx.error, ctx.error_code, ctx.error_type = 200, None, None, None


def _record(ctx: RequestContext, scanner: Any, filters: list[StreamFilter]) -> None:
    counts: dict[str, int] = {}
    for f in filters:
        for name, n in f.found().items():
            counts[name] = counts.get(name, 0) + n
    merge_verdicts(ctx.firewall_verdicts, verdicts_for(scanner, counts, "response"))
