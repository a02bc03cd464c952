"""The answers: ``x-ratelimit-*`` headers, the 429 and the 403, as OpenAI sends them."""

from __future__ import annotations

import math

from tollway.errors import GatewayError, PermissionDenied
from tollway.limits.counters import Decision, Window

__all__ = ["RateLimitExceeded", "duration", "model_not_allowed", "rate_headers", "rate_limited"]


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    if seconds < 60:
        text = f"{math.ceil(seconds * 10) / 10:.1f}".removesuffix(".0")
        return f"{text}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def _window(kind: bytes, w: Window) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-" + kind, str(w.limit).encode()),
        (b"x-ratelimit-remaining-" + kind, str(w.remaining).encode()),
        (b"x-ratelimit-reset-" + kind, duration(w.reset_seconds).encode()),
    ]


def rate_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """The ``x-ratelimit-*`` headers of the tightest request and token buckets."""
    out: list[tuple[bytes, bytes]] = []
    if decision.requests is not None:
        out += _window(b"requests", decision.requests)
    if decision.tokens is not None:
        out += _window(b"tokens", decision.tokens)
    return out


class RateLimitExceeded(GatewayError):
    """429 ``rate_limit_exceeded``; ``code`` names scope and limit, e.g. ``key_rpm``."""

    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


_WHAT = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrency": "concurrent requests",
}
_SCOPE = {
    "key": "this API key",
    "account": "this account",
    "key_model": "this API key on model {alias}",
    "account_model": "this account on model {alias}",
}


def rate_limited(decision: Decision, alias: str, tokens: int) -> RateLimitExceeded:
    """The 429 for a refused decision, with ``Retry-After`` (and ``retry-after-ms``)."""
    assert decision.refused is not None
    check, limit = decision.refused
    value = {"rpm": check.rpm, "tpm": check.tpm, "concurrency": check.concurrent}[limit]
    who = _SCOPE[check.scope].format(alias=alias)
    message = f"Rate limit reached for {who}: limit {value} {_WHAT[limit]}"
    if limit == "tpm":
        message += f"; this request's prompt is {tokens} tokens"
        if check.tpm is not None and tokens > check.tpm:
            message += ", more than the limit allows in a minute"
    retry = max(decision.retry_after, 0.001)
    message += f". Please try again in {duration(retry)}."
    headers = {
        "retry-after": str(max(math.ceil(retry), 1)),
        "retry-after-ms": str(math.ceil(retry * 1000)),
    }
    return RateLimitExceeded(message, code=f"{check.scope}_{limit}", headers=headers)


def model_not_allowed(alias: str) -> PermissionDenied:
    return PermissionDenied(
        f"This API key may not use the model `{alias}`.", param="model", code="model_not_allowed"
    )
