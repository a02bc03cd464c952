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
deadlines, and a failure becomes one ``StreamError`` (502, or 504 for a deadline);
nothing is retried. One timer (``_Watchdog``) watches a request's upstream calls
from the first attempt's ``first_token`` deadline to the end of the stream, rather
than a timeout per chunk or a timeout per phase (an ``asyncio.timeout`` for the
first token and a timer after it cost two timers a request: ≈ 3.5 µs more).

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
import math
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
    dog: _Watchdog | None = None
    try:  # until the commit point: every way out stops the watchdog
        i = 0
        while i < len(deployments):
            dep = deployments[i]
            started = loop.time()
            router.started(dep)
            events = router.providers[dep.provider].stream(request, dep).__aiter__()
            buffered: list[Event] = []
            first_at = started + min(dep.timeouts.first_token, dep.timeouts.total)
            if dog is None:
                dog = _Watchdog(loop, first_at)
            else:
                dog.first_by(first_at)
            try:
                try:
                    async for event in events:
                        buffered.append(event)
                        if type(event) is not Start and type(event) is not Raw:
                            break
                        ctx.mark("upstream_connected")
                except asyncio.CancelledError:
                    if dog.fired is None or dog.task.uncancel() > 0:
                        raise  # a real cancellation (client gone), not the first-token deadline
                    raise TimeoutError from None
                finally:
                    dog.hold()  # nothing to time until the next attempt or the commit
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
    except BaseException:
        if dog is not None:
            dog.stop()
        raise

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
    assert dog is not None
    dog.stream(dep.timeouts.idle, started + dep.timeouts.total)
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
    """One timer for a request's upstream calls: cancels the task when a deadline passes.

    Until the commit point it watches an attempt's first-token deadline (``first_by``;
    ``hold`` between attempts: a retry's wait or an upstream's close is not timed),
    then the stream's ``idle`` and ``total`` deadlines (``stream``). The loop only
    records when it starts waiting (``since``); the timer re-arms itself lazily, at
    the deadline it is armed for or later, so a chunk costs a clock read and two
    attribute writes, and a new deadline re-arms it only when it comes sooner. Like
    ``asyncio.timeout`` it assumes one task consumes the stream. ``fired`` names the
    deadline that cancelled the task.
    """

    __slots__ = ("due", "first_at", "fired", "handle", "idle", "loop", "since", "task",
                 "total_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, first_at: float) -> None:
        self.loop = loop
        self._consumer()
        self.first_at: float | None = first_at
        self.idle = 0.0  # 0 until the commit (``stream``): between attempts nothing is due
        self.total_at = math.inf
        self.since: float | None = None
        self.fired: str | None = None
        self.due = first_at
        self.handle = loop.call_at(first_at, self._check)

    def _arm(self, due: float) -> None:
        """Make sure the timer fires by ``due`` (a timer due later is moved sooner)."""
        if due < self.due:
            self.handle.cancel()
            self.due = due
            self.handle = self.loop.call_at(due, self._check)

    def _consumer(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task

    def first_by(self, first_at: float) -> None:
        """An attempt begins: its first event must come by ``first_at``."""
        self._consumer()
        self.fired = None
        self.first_at = first_at
        self._arm(first_at)

    def hold(self) -> None:
        """Between attempts: no deadline (the timer, if it fires, stops until one is set)."""
        self.first_at = None

    def stream(self, idle: float, total_at: float) -> None:
        """Committed: the stream's ``idle`` and ``total`` deadlines from now."""
        self._consumer()
        self.first_at = None
        self.fired = None
        self.idle = idle
        self.total_at = total_at
        self._arm(min(self.loop.time() + idle, total_at))

    def _check(self) -> None:
        now = self.loop.time()
        first = self.first_at
        since = self.since
        if first is not None:  # an attempt waits for its first event
            if now >= first:
                self._fire("first_token")
                return
            due = first
        elif not self.idle:  # between attempts: nothing is due until one is set
            self.due = math.inf
            return
        elif since is None:  # the consumer holds the stream: only the next wait can time out
            due = now + self.idle if now >= self.total_at else min(now + self.idle, self.total_at)
        elif now >= self.total_at:
            self._fire("total")
            return
        elif now >= since + self.idle:
            self._fire("idle")
            return
        else:
            due = min(since + self.idle, self.total_at)
        self.due = due
        self.handle = self.loop.call_at(due, self._check)

    def _fire(self, deadline: str) -> None:
        self.fired = deadline
        self.due = math.inf  # no timer pending: the next deadline set arms one
        self.task.cancel()

    def stop(self) -> None:
        """Cancel the timer."""
        self.handle.cancel()
        self.due = math.inf


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

