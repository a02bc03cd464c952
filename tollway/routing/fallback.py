"""Retries and fallback until the commit point; after it, errors become events.

The commit point is the first content-bearing event (anything but ``Start`` and
``Raw``: an upstream's own framing events, such as Anthropic's ``message_start``,
are held with it).
Until then a failed deployment is replaced invisibly: a retryable
``UpstreamError``, a broken connection or no first token within
``timeouts.first_token`` moves on to the next deployment of the plan. A
``Retry-After`` keeps the deployment out of plans for that long; when no other
deployment is left and the wait is at most ``max_retry_after``, tollway waits
and tries it once more. Non-retryable errors (the upstream's 400/404/422) are
raised at once.

After the commit point the stream runs under the ``idle`` and ``total``
deadlines, watched by one timer (``_Watchdog``) rather than a timeout per
chunk, and a failure becomes one ``StreamError`` (502, or 504 for a deadline);
nothing is retried.

This is where upstream errors enter the request path, so it is where they are
made safe and recorded: every ``UpstreamError`` passes through the
``SecretRedactor`` before it reaches an attempt, the client or the trace, and
the error the request ends with (raised before the commit point, or streamed
after it) is recorded on the context with ``ctx.fail``. A request cancelled
while an attempt runs (the client went away) records that attempt as
``abandoned`` and makes its deployment the request's, so that the prompt the
upstream received is billed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp

from tollway.chunks import Event, Raw, Start, StreamError
from tollway.config import DeploymentConfig
from tollway.context import Attempt, RequestContext
from tollway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from tollway.providers.base import ChatRequest
from tollway.routing.redact import SecretRedactor
from tollway.routing.select import Router

__all__ = ["open_stream"]

_TRANSPORT_ERRORS = (UpstreamError, TimeoutError, OSError, aiohttp.ClientError)


async def open_stream(
    router: Router,
    alias: str,
    request: ChatRequest,
    ctx: RequestContext,
    redactor: SecretRedactor | None = None,
) -> AsyncIterator[Event]:
    """Events of the first deployment that reaches the commit point."""
    plan = router.plan(alias)
    for dep, reason in plan.skipped:
        ctx.attempts.append(Attempt(dep.id, "skipped", None, reason))
    deployments = plan.deployments
    if not deployments:
        raise _failed(
            ctx, UpstreamUnavailable(f"no deployment of model {alias!r} is available now")
        )
    loop = asyncio.get_running_loop()
    last_error: UpstreamError | None = None
    waited: set[str] = set()
    i = 0
    while i < len(deployments):
        dep = deployments[i]
        started = loop.time()
        router.started(dep)
        events = router.providers[dep.provider].stream(request, dep).__aiter__()
        buffered: list[Event] = []
        try:
            limit = min(dep.timeouts.first_token, dep.timeouts.total)
            async with asyncio.timeout_at(started + limit):
                async for event in events:
                    buffered.append(event)
                    if type(event) is not Start and type(event) is not Raw:
                        break
                    ctx.mark("upstream_connected")
        except _TRANSPORT_ERRORS as exc:
            await _close(events)
            err = _upstream_error(exc, dep, redactor)
            ctx.attempts.append(
                Attempt(dep.id, "error", err.status, err.message,
                        (loop.time() - started) * 1000, err.misconfigured)
            )
            router.finished(dep, not err.retryable, None)
            if not err.retryable:
                raise _failed(ctx, err) from None
            last_error = err
            if err.retry_after is not None:
                router.block(dep, err.retry_after)
                if (
                    i == len(deployments) - 1
                    and err.retry_after <= router.config.max_retry_after
                    and dep.id not in waited
                ):
                    waited.add(dep.id)
                    await asyncio.sleep(err.retry_after)
                    continue
            i += 1
            continue
        except BaseException as exc:
            await _close(events)
            router.released(dep)  # cancelled or a bug: says nothing about the deployment
            if isinstance(exc, asyncio.CancelledError):  # the request ended while it ran
                ctx.attempts.append(
                    Attempt(dep.id, "abandoned", None, None, (loop.time() - started) * 1000)
                )
                ctx.deployment = dep  # it received the prompt: billed as partial
            raise
        break
    else:
        assert last_error is not None
        if plan.all_cooling:
            raise _failed(ctx, UpstreamUnavailable(
                f"every deployment of model {alias!r} is cooling down; "
                f"the last one failed with: {last_error.message}"
            ))
        raise _failed(ctx, last_error)

    ttft = loop.time() - started
    attempt = Attempt(dep.id, "ok", 200, None, ttft * 1000)
    ctx.attempts.append(attempt)
    ctx.deployment = dep
    ctx.mark("first_token")
    for i, event in enumerate(buffered):
        if type(event) is Start:
            if not event.model:  # the upstream named none (yet): the deployment's, everywhere
                event = buffered[i] = replace(event, model=dep.model)
            ctx.served_model = event.model

    # Committed: from here on nothing is retried.
    ok = True
    dog = _Watchdog(dep.timeouts.idle, started + dep.timeouts.total)
    try:
        for event in buffered:
            yield event
        anext_ = events.__anext__
        clock = loop.time
        total_at = dog.total_at
        while True:
            now = clock()
            if now >= total_at:
                raise _Expired("total")
            dog.since = now
            try:
                event = await anext_()
            except StopAsyncIteration:
                break
            finally:
                dog.since = None
            yield event
    except asyncio.CancelledError:
        if dog.fired is None or dog.task.uncancel() > 0:
            raise  # a real cancellation (client gone), not our deadline
        ok = False
        yield _after_commit(ctx, attempt, _deadline_error(dep, dog.fired))
    except _Expired as exc:
        ok = False
        yield _after_commit(ctx, attempt, _deadline_error(dep, exc.args[0]))
    except _TRANSPORT_ERRORS as exc:
        ok = False
        err = _upstream_error(exc, dep, redactor)
        status = 504 if err.status == 504 else 502
        yield _after_commit(
            ctx, attempt, StreamError(status, err.message, "upstream_error", err.code)
        )
    finally:
        dog.stop()
        await _close(events)
        router.finished(dep, ok, ttft)


def _after_commit(ctx: RequestContext, attempt: Attempt, error: StreamError) -> StreamError:
    """Note a failure after the commit point on the attempt that served and the request."""
    attempt.status = error.status
    attempt.error = error.message
    ctx.fail(error.status, error.message, error.code, error.type)
    return error


def _failed(ctx: RequestContext, err: UpstreamError) -> UpstreamError:
    """Record the error the request ends with (also when a stage turns it into an event)."""
    ctx.fail(err.status, err.message, err.code, err.type)
    return err


class _Expired(Exception):
    """The total deadline passed while the consumer held the stream."""


def _deadline_error(dep: DeploymentConfig, which: str) -> StreamError:
    seconds = dep.timeouts.idle if which == "idle" else dep.timeouts.total
    return StreamError(
        504,
        f"deployment {dep.id!r} exceeded its {which} timeout ({seconds:g}s)",
        "timeout",
        "upstream_timeout",
    )


class _Watchdog:
    """One timer for a whole stream: cancels the task when a deadline passes.

    The loop only records when it starts waiting (``since``); the timer re-arms
    itself lazily, so a chunk costs a clock read and two attribute writes. Like
    ``asyncio.timeout`` it assumes one task consumes the stream.
    """

    __slots__ = ("fired", "handle", "idle", "loop", "since", "task", "total_at")

    def __init__(self, idle: float, total_at: float) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.idle = idle
        self.total_at = total_at
        self.since: float | None = None
        self.fired: str | None = None
        self.handle = self.loop.call_at(min(self.loop.time() + idle, total_at), self._check)

    def _check(self) -> None:
        now = self.loop.time()
        since = self.since
        if since is None:  # the consumer holds the stream: only the next wait can time out
            due = now + self.idle if now >= self.total_at else min(now + self.idle, self.total_at)
        elif now >= self.total_at:
            self.fired = "total"
            self.task.cancel()
            return
        elif now >= since + self.idle:
            self.fired = "idle"
            self.task.cancel()
            return
        else:
            due = min(since + self.idle, self.total_at)
        self.handle = self.loop.call_at(due, self._check)

    def stop(self) -> None:
        """Cancel the timer."""
        self.handle.cancel()


def _upstream_error(
    exc: BaseException, dep: DeploymentConfig, redactor: SecretRedactor | None
) -> UpstreamError:
    """The failure as an ``UpstreamError``, with tollway's secrets redacted."""
    if isinstance(exc, UpstreamError):
        return redactor.error(exc) if redactor else exc
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(
            f"deployment {dep.id!r} sent no first token within "
            f"{min(dep.timeouts.first_token, dep.timeouts.total):g}s"
        )
    return UpstreamError(f"deployment {dep.id!r} connection failed: {type(exc).__name__}")


async def _close(events: Any) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()

