"""One request's envelope, shared by every inbound API: it is settled and traced
whatever happens (an error, the client leaving at any point, the upstream dying)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tollway.api.http import ClientGone
from tollway.api.watch import ClientWatch
from tollway.context import RequestContext
from tollway.errors import GatewayError

__all__ = ["ErrorAnswer", "mark_gone", "run_request"]

log = logging.getLogger("tollway")

Headers = list[tuple[bytes, bytes]]
# sends an error to the client in the API's own format (status, or last stream event)
ErrorAnswer = Callable[[GatewayError, Headers], Awaitable[None]]


def mark_gone(ctx: RequestContext) -> None:
    """The client disconnected before the response was complete."""
    ctx.client_disconnected = True
    ctx.status = 499
    if ctx.error is None:
        ctx.error_code = "client_disconnected"


async def run_request(
    ctx: RequestContext,
    serve: Callable[[], Awaitable[None]],
    answer_error: ErrorAnswer,
    headers: Headers,
    watch: ClientWatch,
    settle: Callable[[RequestContext], Awaitable[object]],
) -> None:
    """Run ``serve()``; a GatewayError is answered with its status, anything unexpected
    with a 500 (logged, never shown), a disconnect is recorded as 499, and ``settle``
    runs last on every path, cancellation included."""
    try:
        try:
            await serve()
        except GatewayError as exc:
            ctx.fail(exc.status, exc.message, exc.code, exc.type)
            watch.stop()
            await answer_error(exc, headers + ctx.response_headers)
        except ClientGone:
            mark_gone(ctx)
        except Exception:
            log.exception("unhandled error in request %s", ctx.request_id)
            ctx.fail(500, "internal error")
            watch.stop()
            await answer_error(
                GatewayError("The server had an error processing your request."), headers
            )
    except asyncio.CancelledError:
        if not watch.gone:
            raise
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        mark_gone(ctx)
    finally:
        watch.stop()
        await settle(ctx)
