"""One upstream call's record (``CallRecord``) and the budget it is held to (``Budget``).

Billing implements ``Budget`` (its running tab of a request, ``ctx.budget``) and
prices the records; ``pipeline/budget.py`` (``metered_call``) fills them while a call
streams. A record is complete at any moment, so settlement never depends on the
order in which cancelled generators are finalized.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol

from tollway import tokens
from tollway.chunks import Usage
from tollway.config import DeploymentConfig
from tollway.providers.base import ChatRequest

__all__ = ["COMPACT_AT", "CUT", "Budget", "CallRecord", "estimated_usage", "next_compaction"]

CallState = Literal["open", "done", "failed", "partial", "cut"]
CUT = -1  # ``CallRecord.over_limit``: the limit is passed, cut the call
COMPACT_AT = 32  # recorded pieces of one choice before they are first joined (``compact``)
_COMPACT_SHARE = 8  # later: when the pieces reach 1/256 of the characters joined so far


def next_compaction(joined: int) -> int:
    """How many recorded pieces to let gather before the next join, once ``joined``
    characters are held as text. Each piece is a string object (≈ 50 bytes for a few
    characters), so few are let gather; but each join copies the text joined so far, so
    past 8,192 characters the count grows with it: the text then grows by a fixed share
    between joins, and the copying of a whole stream stays a constant multiple of its
    length (≈ 65× for 4-character pieces; with a fixed count it grew with the square of
    the length) while its pieces hold ≈ 0.2 bytes a character."""
    return max(COMPACT_AT, joined >> _COMPACT_SHARE)


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

    __slots__ = ("_compact_at", "_counts", "deployment", "floor", "limit", "more", "pieces",
                 "prompt_counted", "reported", "request", "start_usage", "state")  # fmt: skip

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
        self._compact_at: dict[int, int] = {}  # choice (not 0) -> pieces before its next join

    def add(self, choice: int, text: str) -> None:
        """Record output of a choice other than 0 (choice 0 appends to ``pieces``)."""
        texts = self.more.get(choice)
        if texts is None:
            texts = self.more[choice] = []
        texts.append(text)
        if len(texts) >= self._compact_at.get(choice, COMPACT_AT):
            self._compact_at[choice] = self.compact(choice)

    def compact(self, choice: int) -> int:
        """Join a choice's recorded pieces into at most two strings: the part already
        counted and the part not yet. A stream's text is then held as text (a few bytes a
        token) instead of one string object per chunk (≈ 50 bytes each), and every count
        is unchanged: counts join these same pieces in the same order and never cut
        across the counted boundary. The pipeline calls it when the pieces reach the count
        it returns (``next_compaction``)."""
        texts = self.pieces if choice == 0 else self.more[choice]
        state = self._counts.get(choice)
        counted = state[0] if state is not None else 0
        joined = ["".join(texts[:counted])] if counted else []
        if counted < len(texts):
            joined.append("".join(texts[counted:]))
        texts[:] = joined
        if state is not None and counted:
            state[0] = 1
        return next_compaction(sum(map(len, joined)))

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
        """The next byte count to look again at, or ``CUT`` when the limit is passed.

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
                return CUT
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
