"""Fault injection: real local upstreams behind the Anthropic adapter, one router."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fake_upstream import refused_url, serve, write_sse
from tollway.chunks import Event, Finish, Start, StreamError, TextDelta, Usage
from tollway.config import DeploymentConfig, ModelConfig, ProviderConfig, Timeouts
from tollway.context import RequestContext
from tollway.errors import UpstreamError, UpstreamUnavailable
from tollway.providers.anthropic import AnthropicProvider
from tollway.providers.base import ChatRequest
from tollway.routing.config import RoutingConfig
from tollway.routing.fallback import open_stream
from tollway.routing.select import Router

RECORDINGS = Path("/work/shared/conformance/streams/anthropic")
BASIC = (RECORDINGS / "sdkpy-basic_response.sse").read_bytes()
OVERLOADED = (RECORDINGS / "docs-error-overloaded.sse").read_bytes()
KEY = "sk-ant-do-not-leak-0123"
FAST = Timeouts(connect=1.0, first_token=0.3, idle=0.3, total=5.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request() -> ChatRequest:
    messages = [{"role": "user", "content": "hi"}]
    return ChatRequest(body={"model": "chat", "messages": messages}, model="chat", stream=True,
                       include_usage=True, messages=messages)


def basic(req: web.Request) -> Awaitable[web.StreamResponse]:
    return write_sse(req, BASIC)


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    async def handler(req: web.Request) -> web.StreamResponse:
        body = {"type": "error", "error": {"type": "api_error", "message": f"HTTP {code} here"}}
        return web.json_response(body, status=code, headers=headers)
    return handler


def events_then(raw: bytes, then: Callable[[web.StreamResponse], Awaitable[None]]) -> Handler:
    async def handler(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        await resp.write(raw)
        await then(resp)
        return resp
    return handler


def cut_after(marker: bytes) -> bytes:
    return BASIC[: BASIC.index(marker)]


async def hang(resp: web.StreamResponse) -> None:
    await asyncio.sleep(30)


@asynccontextmanager
async def gateway(
    handlers: list[Handler | str],
    strategy: str = "fallback",
    timeouts: Timeouts = FAST,
    routing: RoutingConfig | None = None,
) -> AsyncIterator[tuple[Router, list[int]]]:
    """A router over one deployment per handler (a str is a base URL as is)."""
    hits = [0] * len(handlers)
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        providers: dict[str, Any] = {}
        deps = []
        for i, handler in enumerate(handlers):
            if isinstance(handler, str):
                url = handler
            else:
                url = await stack.enter_async_context(serve(_counting(handler, hits, i)))
            name = f"p{i}"
            providers[name] = AnthropicProvider(
                name, ProviderConfig(type="anthropic", base_url=url, api_key=KEY), session
            )
            deps.append(DeploymentConfig(provider=name, model="claude", name=f"d{i}",
                                         timeouts=timeouts))
        models = {"chat": ModelConfig(strategy=strategy, deployments=deps)}  # type: ignore[arg-type]
        yield Router(models, providers, routing), hits


def _counting(handler: Handler, hits: list[int], i: int) -> Handler:
    async def counted(req: web.Request) -> web.StreamResponse:
        hits[i] += 1
        return await handler(req)
    return counted


async def consume(router: Router, ctx: RequestContext) -> list[Event]:
    return [event async for event in open_stream(router, "chat", request(), ctx)]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def assert_clean_basic(events: list[Event]) -> None:
    assert [type(e) for e in events].count(Start) == 1
    assert isinstance(events[0], Start) and events[0].model == "claude-3-opus-latest"
    assert text_of(events) == "Hello there!"
    assert isinstance(events[-2], Finish) and isinstance(events[-1], Usage)
    assert not any(isinstance(e, StreamError) for e in events)


FIRST_FAILURES: dict[str, Handler | Callable[[], str]] = {
    "refused": refused_url,
    "http-500": status(500),
    "http-529": status(529),
    "http-429-retry-after": status(429, {"Retry-After": "30"}),
    "http-401": status(401),
    "hangs-before-first-token": events_then(cut_after(b"event: content_block_start"), hang),
    "error-event-first": lambda req: write_sse(req, OVERLOADED),
    "breaks-before-first-token": events_then(
        cut_after(b"event: content_block_start"), lambda resp: _abort(resp)),
}


async def _abort(resp: web.StreamResponse) -> None:
    assert resp.task is not None
    transport = resp._req.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.abort()


@pytest.mark.parametrize("failure", sorted(FIRST_FAILURES))
def test_first_deployment_fails_second_serves(failure: str) -> None:
    first = FIRST_FAILURES[failure]
    first_handler = first() if failure == "refused" else first  # type: ignore[operator]

    async def main() -> tuple[list[Event], RequestContext, Router]:
        async with gateway([first_handler, basic]) as (router, hits):  # type: ignore[list-item]
            ctx = RequestContext(request_id="r")
            started = time.perf_counter()
            events = await consume(router, ctx)
            assert time.perf_counter() - started < 2.0  # no 30 s Retry-After wait, no hang
            assert hits[1] == 1
            return events, ctx, router

    events, ctx, router = asyncio.run(main())
    assert_clean_basic(events)
    assert [(a.deployment, a.outcome) for a in ctx.attempts] == [("d0", "error"), ("d1", "ok")]
    assert ctx.deployment is not None and ctx.deployment.id == "d1"
    assert ctx.served_model == "claude-3-opus-latest"
    first_attempt = ctx.attempts[0]
    assert first_attempt.error and KEY not in first_attempt.error
    assert first_attempt.misconfigured == (failure == "http-401")
    if failure == "hangs-before-first-token":
        assert first_attempt.status == 504 and 250 <= first_attempt.latency_ms < 1000
    if failure == "http-429-retry-after":
        plan = router.plan("chat")  # the deployment stays out for the Retry-After
        assert [d.id for d in plan.deployments] == ["d1"]
        assert [(d.id, why) for d, why in plan.skipped] == [("d0", "cooling down")]
    assert all(router.health.get(d).in_flight == 0 for d in ("d0", "d1"))


@pytest.mark.parametrize("code", [400, 404, 422])
def test_client_error_is_returned_not_retried(code: int) -> None:
    async def main() -> tuple[UpstreamError, list[int], RequestContext]:
        async with gateway([status(code), basic]) as (router, hits):
            ctx = RequestContext(request_id="r")
            with pytest.raises(UpstreamError) as info:
                await consume(router, ctx)
            return info.value, hits, ctx

    err, hits, ctx = asyncio.run(main())
    assert err.status == code and err.message == f"HTTP {code} here" and not err.retryable
    assert hits == [1, 0] and len(ctx.attempts) == 1


@pytest.mark.parametrize(
    "after_first",
    ["connection-drops", "error-event", "idle-timeout"],
)
def test_failure_after_first_event_is_one_stream_error(after_first: str) -> None:
    head = cut_after(b"event: content_block_stop")  # message_start + three text deltas

    async def then(resp: web.StreamResponse) -> None:
        if after_first == "connection-drops":
            await _abort(resp)
        elif after_first == "error-event":
            await resp.write(OVERLOADED)
            await resp.write_eof()
        else:
            await hang(resp)

    async def main() -> tuple[list[Event], list[int], RequestContext, float]:
        async with gateway([events_then(head, then), basic]) as (router, hits):
            ctx = RequestContext(request_id="r")
            started = time.perf_counter()
            events = await consume(router, ctx)
            return events, hits, ctx, time.perf_counter() - started

    events, hits, ctx, elapsed = asyncio.run(main())
    assert hits == [1, 0]
    assert text_of(events) == "Hello there!"
    errors = [e for e in events if isinstance(e, StreamError)]
    assert errors == [events[-1]]
    assert errors[0].status == (504 if after_first == "idle-timeout" else 502)
    if after_first == "idle-timeout":
        assert "idle timeout" in errors[0].message and 0.25 <= elapsed < 1.5
    assert [(a.deployment, a.outcome) for a in ctx.attempts] == [("d0", "ok")]
    assert ctx.attempts[0].error == errors[0].message


def test_total_deadline_after_commit() -> None:
    head = cut_after(b"event: content_block_stop")

    delta = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
             b'"delta":{"type":"text_delta","text":"."}}\n\n')

    async def trickle(resp: web.StreamResponse) -> None:
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                await resp.write(delta)
        except ConnectionResetError:
            pass  # tollway hung up: that is the point

    async def main() -> tuple[list[Event], float]:
        timeouts = Timeouts(connect=1.0, first_token=0.3, idle=0.2, total=0.6)
        async with gateway([events_then(head, trickle)], timeouts=timeouts) as (router, _):
            started = time.perf_counter()
            events = await consume(router, RequestContext(request_id="r"))
            return events, time.perf_counter() - started

    events, elapsed = asyncio.run(main())
    assert isinstance(events[-1], StreamError) and events[-1].status == 504
    assert "total timeout" in events[-1].message and 0.55 <= elapsed < 1.5


def test_retry_after_waited_out_when_no_other_deployment() -> None:
    calls = {"n": 0}

    async def flaky(req: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] == 1:
            return await status(429, {"Retry-After": "0.2"})(req)
        return await write_sse(req, BASIC)

    async def main() -> tuple[list[Event], RequestContext, float]:
        async with gateway([flaky]) as (router, _):
            ctx = RequestContext(request_id="r")
            started = time.perf_counter()
            events = await consume(router, ctx)
            return events, ctx, time.perf_counter() - started

    events, ctx, elapsed = asyncio.run(main())
    assert_clean_basic(events)
    assert [(a.deployment, a.outcome, a.status) for a in ctx.attempts] == [
        ("d0", "error", 429), ("d0", "ok", 200)]
    assert elapsed >= 0.2


def test_retry_after_too_long_fails_fast() -> None:
    async def main() -> UpstreamError:
        async with gateway([status(429, {"Retry-After": "60"})]) as (router, _):
            with pytest.raises(UpstreamError) as info:
                await asyncio.wait_for(consume(router, RequestContext(request_id="r")), 2)
            return info.value

    err = asyncio.run(main())
    assert err.status == 429 and err.retry_after == 60


def test_all_fail_then_all_cooling_gives_503() -> None:
    routing = RoutingConfig(cooldown_failures=1, cooldown_seconds=60)

    async def main() -> tuple[UpstreamError, UpstreamError, RequestContext]:
        async with gateway([status(500), status(502)], routing=routing) as (router, hits):
            with pytest.raises(UpstreamError) as first:
                await consume(router, RequestContext(request_id="r1"))
            ctx = RequestContext(request_id="r2")
            with pytest.raises(UpstreamUnavailable) as second:
                await consume(router, ctx)
            assert hits == [2, 2]
            return first.value, second.value, ctx

    first, second, ctx = asyncio.run(main())
    assert first.status == 502 and first.message == "HTTP 502 here"
    assert second.status == 503 and "cooling down" in second.message
    assert [a.deployment for a in ctx.attempts] == ["d0", "d1"]  # least recently failed first


def test_client_closing_early_releases_everything() -> None:
    async def slow(req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        await resp.write(cut_after(b"event: content_block_stop"))
        await asyncio.sleep(30)
        return resp

    async def main() -> Router:
        async with gateway([slow]) as (router, _):
            stream = open_stream(router, "chat", request(), RequestContext(request_id="r"))
            async for event in stream:
                if isinstance(event, TextDelta):
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            return router

    router = asyncio.run(asyncio.wait_for(main(), 5))
    assert router.health.get("d0").in_flight == 0
    assert router.health.get("d0").failures == type(router.health.get("d0").failures)()


# -- one timer a request (``_Watchdog``): the first-token deadline, then idle and total --

HANGS = events_then(cut_after(b"event: content_block_start"), hang)


def test_first_token_deadlines_in_a_row_each_fire() -> None:
    """Two deployments that never answer, then one that does: the timer that fired for
    the first is armed again for the second (and once more for the third)."""

    async def main() -> tuple[list[Event], RequestContext, float]:
        async with gateway([HANGS, HANGS, basic]) as (router, _):
            ctx = RequestContext(request_id="r")
            started = time.perf_counter()
            events = await asyncio.wait_for(consume(router, ctx), 5)
            return events, ctx, time.perf_counter() - started

    events, ctx, elapsed = asyncio.run(main())
    assert_clean_basic(events)
    assert [(a.deployment, a.outcome, a.status) for a in ctx.attempts] == [
        ("d0", "error", 504), ("d1", "error", 504), ("d2", "ok", 200)]
    assert 0.55 <= elapsed < 2.5


def test_idle_deadline_shorter_than_the_first_token_s_fires_on_time() -> None:
    """After the commit the idle deadline (0.3 s) comes before the first-token one the
    timer was armed for (5 s): it is moved sooner, not left to fire late."""

    async def main() -> tuple[list[Event], float]:
        timeouts = Timeouts(connect=1.0, first_token=5.0, idle=0.3, total=20.0)
        head = cut_after(b"event: content_block_stop")
        async with gateway([events_then(head, hang)], timeouts=timeouts) as (router, _):
            started = time.perf_counter()
            events = await asyncio.wait_for(consume(router, RequestContext(request_id="r")), 4)
            return events, time.perf_counter() - started

    events, elapsed = asyncio.run(main())
    assert isinstance(events[-1], StreamError) and events[-1].status == 504
    assert "idle timeout" in events[-1].message and 0.25 <= elapsed < 1.5


def test_a_retry_wait_longer_than_the_first_token_deadline_is_not_cut() -> None:
    """Between attempts nothing is timed: a Retry-After wait (0.5 s) past the first
    attempt's first-token deadline (0.3 s) is waited out, then the deployment serves."""
    calls = {"n": 0}

    async def flaky(req: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] == 1:
            return await status(429, {"Retry-After": "0.5"})(req)
        return await write_sse(req, BASIC)

    async def main() -> tuple[list[Event], RequestContext]:
        async with gateway([flaky]) as (router, _):
            ctx = RequestContext(request_id="r")
            return await asyncio.wait_for(consume(router, ctx), 5), ctx

    events, ctx = asyncio.run(main())
    assert_clean_basic(events)
    assert [(a.deployment, a.outcome, a.status) for a in ctx.attempts] == [
        ("d0", "error", 429), ("d0", "ok", 200)]
