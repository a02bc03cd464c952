"""Rate-limit counters: token buckets for rpm and tpm, slot sets for concurrency.

A request is checked against a list of ``Check`` (one per scope that has limits:
key, account, key×model, account×model) in one atomic step: every bucket must
allow it, then all are debited together, or none is. A bucket of capacity ``C``
per minute refills continuously at ``C/60`` per second, so a burst of ``C`` is
allowed and then one more every ``60/C`` seconds (OpenAI's semantics: the
``reset`` is the time until the bucket is full again). tpm takes the counted
prompt tokens at admission (the bucket must hold them) and the output tokens at
settlement (it may go below zero then: later requests wait until it refills),
so a tpm limit holds to within one request's output.

``LocalCounters`` keeps them in this process (exact for one process); the Redis
store (``redis_counters``) runs the same algorithm in a Lua script.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Check", "Counters", "Decision", "LocalCounters", "Window", "decide_window"]

RPM, TPM, CONCURRENCY = "rpm", "tpm", "concurrency"


@dataclass(frozen=True, slots=True)
class Check:
    """The limits of one scope for this request (None: no such limit)."""

    bucket: str  # e.g. "key:key_ab12" or "key_model:key_ab12:gpt-4o"
    scope: str  # "key" | "account" | "key_model" | "account_model"
    rpm: int | None
    tpm: int | None
    concurrent: int | None


@dataclass(frozen=True, slots=True)
class Window:
    """The tightest request or token bucket, for the ``x-ratelimit-*`` headers."""

    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class Decision:
    """``refused`` is (check, "rpm" | "tpm" | "concurrency") or None when admitted."""

    refused: tuple[Check, str] | None
    retry_after: float
    requests: Window | None
    tokens: Window | None


class Counters(Protocol):
    async def acquire(self, checks: Sequence[Check], tokens: int, member: str) -> Decision: ...

    async def release(self, checks: Sequence[Check], member: str, tokens: int) -> None: ...

    async def close(self) -> None: ...


def decide_window(levels: Sequence[tuple[int, float]]) -> Window | None:
    """The tightest of (capacity per minute, level) buckets: least remaining."""
    best: Window | None = None
    for cap, level in levels:
        remaining = max(math.floor(level), 0)
        reset = max(cap - level, 0.0) * 60.0 / cap
        window = Window(cap, remaining, reset)
        if best is None or (remaining, cap) < (best.remaining, best.limit):
            best = window
    return best


def refill(level: float | None, at: float | None, cap: int, now: float) -> float:
    if level is None or at is None:
        return float(cap)
    return min(float(cap), level + max(now - at, 0.0) * cap / 60.0)


class LocalCounters:
    """In-process counters (one event loop, so each call is atomic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (level, at)
        self._slots: dict[str, set[str]] = {}

    def _level(self, name: str, cap: int, now: float) -> float:
        state = self._buckets.get(name)
        if state is None:
            return float(cap)
        return refill(state[0], state[1], cap, now)

    def acquire_now(self, checks: Sequence[Check], tokens: int, member: str) -> Decision:
        now = self._clock()
        refused: tuple[Check, str] | None = None
        retry = 0.0
        levels: list[tuple[float | None, float | None]] = []
        for check in checks:
            rl = self._level("r:" + check.bucket, check.rpm, now) if check.rpm else None
            tl = self._level("t:" + check.bucket, check.tpm, now) if check.tpm else None
            if refused is None:
                if check.rpm and rl is not None and rl < 1:
                    refused, retry = (check, RPM), (1 - rl) * 60.0 / check.rpm
                elif check.tpm and tl is not None and tl < tokens:
                    refused, retry = (check, TPM), (tokens - tl) * 60.0 / check.tpm
                elif check.concurrent and self.in_flight(check.bucket) >= check.concurrent:
                    refused, retry = (check, CONCURRENCY), 1.0
            levels.append((rl, tl))
        if refused is None:
            for i, check in enumerate(checks):
                rl, tl = levels[i]
                if check.rpm and rl is not None:
                    rl -= 1
                    self._buckets["r:" + check.bucket] = (rl, now)
                if check.tpm and tl is not None:
                    tl -= tokens
                    self._buckets["t:" + check.bucket] = (tl, now)
                if check.concurrent:
                    self._slots.setdefault(check.bucket, set()).add(member)
                levels[i] = (rl, tl)
        return _decision(checks, levels, refused, retry)

    async def acquire(self, checks: Sequence[Check], tokens: int, member: str) -> Decision:
        return self.acquire_now(checks, tokens, member)

    def release_now(self, checks: Sequence[Check], member: str, tokens: int) -> None:
        now = self._clock()
        for check in checks:
            if check.tpm and tokens:
                name = "t:" + check.bucket
                self._buckets[name] = (self._level(name, check.tpm, now) - tokens, now)
            if check.concurrent:
                slots = self._slots.get(check.bucket)
                if slots is not None:
                    slots.discard(member)
                    if not slots:
                        del self._slots[check.bucket]

    async def release(self, checks: Sequence[Check], member: str, tokens: int) -> None:
        self.release_now(checks, member, tokens)

    def in_flight(self, bucket: str) -> int:
        return len(self._slots.get(bucket, ()))

    async def close(self) -> None:
        return None


def _decision(
    checks: Sequence[Check],
    levels: Sequence[tuple[float | None, float | None]],
    refused: tuple[Check, str] | None,
    retry: float,
) -> Decision:
    pairs = list(zip(checks, levels, strict=True))
    requests = decide_window([(c.rpm, lv[0]) for c, lv in pairs if c.rpm and lv[0] is not None])
    tokens = decide_window([(c.tpm, lv[1]) for c, lv in pairs if c.tpm and lv[1] is not None])
    return Decision(refused, retry, requests, tokens)
