"""Retries and fallback until the commit point; after it, errors become events.

The commit point is the first content-bearing event (anything but ``Start``):
until then a failed deployment can be replaced invisibly; after it, a failure
becomes one ``StreamError`` and the stream ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from tollway.chunks import Event, Start, StreamError
from tollway.context import Attempt, RequestContext
from tollway.errors import GatewayError, UpstreamError, UpstreamUnavailable
from tollway.providers.base import ChatRequest
from tollway.routing.select import Router

__all__ = ["open_stream"]


async def open_stream(
    router: Router, alias: str, request: ChatRequest, ctx: RequestContext
) -> AsyncIterator[Event]:
    """Events of the first deployment that reaches the commit point."""
    last_error: GatewayError | None = None
    for deployment in router.order(alias):
        provider = router.providers[deployment.provider]
        started = time.perf_counter()
        router.started(deployment)
        events = provider.stream(request, deployment).__aiter__()
        buffered: list[Event] = []
        try:
            async for event in events:
                buffered.append(event)
                if type(event) is not Start:
                    break
            else:
                pass  # the upstream ended without content: still a (empty) answer
        except UpstreamError as exc:
            await events.aclose()
            ctx.attempts.append(
                Attempt(deployment.id, "error", exc.status, exc.message,
                        (time.perf_counter() - started) * 1000, exc.misconfigured)
            )
            router.finished(deployment, False, None)
            if not exc.retryable:
                raise
            last_error = exc
            continue
        except BaseException:
            await events.aclose()
            router.finished(deployment, False, None)
            raise
        ttft = time.perf_counter() - started
        ctx.attempts.append(Attempt(deployment.id, "ok", 200, None, ttft * 1000))
        ctx.deployment = deployment
        ctx.mark("first_token")
        ok = True
        try:
            for event in buffered:
                if type(event) is Start:
                    ctx.served_model = event.model or deployment.model
                yield event
            async for event in events:
                yield event
        except UpstreamError as exc:
            ok = False
            yield StreamError(exc.status, exc.message, exc.type, exc.code)
        finally:
            await events.aclose()
            router.finished(deployment, ok, ttft)
        return
    if last_error is None:
        raise UpstreamUnavailable(f"no deployment of model {alias!r} is available")
    raise last_error
