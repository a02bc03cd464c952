"""Strategies and cool-down, with a stub adapter at the Provider boundary."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tollway.chunks import Event, Finish, Start, TextDelta
from tollway.config import DeploymentConfig, ModelConfig
from tollway.context import RequestContext
from tollway.errors import ModelNotFound, UpstreamError
from tollway.providers.base import ChatRequest
from tollway.routing.config import RoutingConfig
from tollway.routing.fallback import open_stream
from tollway.routing.select import Router


class Stub:
    """A Provider whose answer per deployment is set by the test: ok, fail, or a delay."""

    def __init__(self) -> None:
        self.fail: set[str] = set()
        self.first_token_delay: dict[str, float] = {}
        self.hold: dict[str, float] = {}
        self.calls: list[str] = []

    async def stream(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]:
        name = deployment.id
        self.calls.append(name)
        yield Start(model=deployment.model)
        await asyncio.sleep(self.first_token_delay.get(name, 0))
        if name in self.fail:
            raise UpstreamError(f"{name} is down", status=502)
        yield TextDelta("hi")
        await asyncio.sleep(self.hold.get(name, 0))
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    strategy: str, weights: list[float] | None = None, n: int = 2, **cfg: Any
) -> tuple[Router, Stub, Clock]:
    stub, clock = Stub(), Clock()
    weights = weights or [1.0] * n
    deps = [DeploymentConfig(provider="stub", model=f"m{i}", name=f"d{i}", weight=w)
            for i, w in enumerate(weights)]
    models = {"chat": ModelConfig(strategy=strategy, deployments=deps)}  # type: ignore[arg-type]
    router = Router(models, {"stub": stub}, RoutingConfig(**cfg), rng=random.Random(7), clock=clock)
    return router, stub, clock


def request() -> ChatRequest:
    messages = [{"role": "user", "content": "hi"}]
    return ChatRequest(body={}, model="chat", stream=True, include_usage=True, messages=messages)


async def serve_one(router: Router) -> RequestContext:
    ctx = RequestContext(request_id="r")
    async for _ in open_stream(router, "chat", request(), ctx):
        pass
    return ctx


def outcomes(ctx: RequestContext) -> list[tuple[str, str]]:
    return [(a.deployment, a.outcome) for a in ctx.attempts]


def test_unknown_alias() -> None:
    router, _, _ = make("fallback")
    with pytest.raises(ModelNotFound):
        router.order("nope")


def test_fallback_keeps_config_order() -> None:
    router, _, _ = make("fallback", n=3)
    assert [d.id for d in router.order("chat")] == ["d0", "d1", "d2"]


def test_weighted_distribution_within_tolerance() -> None:
    router, _, _ = make("weighted", weights=[1, 3, 6])
    picks = Counter(router.order("chat")[0].id for _ in range(20000))
    for dep, share in (("d0", 0.1), ("d1", 0.3), ("d2", 0.6)):
        assert abs(picks[dep] / 20000 - share) < 0.02, picks
    order = [d.id for d in router.order("chat")]
    assert sorted(order) == ["d0", "d1", "d2"]  # the rest follow as fallbacks


def test_least_busy_spreads_concurrent_load() -> None:
    router, stub, _ = make("least-busy", n=3)
    stub.hold = {"d0": 0.2, "d1": 0.2, "d2": 0.2}

    async def main() -> Counter[str]:
        ctxs = await asyncio.gather(*(serve_one(router) for _ in range(30)))
        return Counter(c.deployment.id for c in ctxs if c.deployment)

    assert asyncio.run(main()) == {"d0": 10, "d1": 10, "d2": 10}
    assert all(router.health.get(f"d{i}").in_flight == 0 for i in range(3))


def test_least_busy_favours_the_faster_deployment_under_load() -> None:
    router, stub, _ = make("least-busy")
    stub.hold = {"d0": 0.2, "d1": 0.005}

    async def main() -> Counter[str]:
        tasks = []
        for _ in range(80):
            tasks.append(asyncio.create_task(serve_one(router)))
            await asyncio.sleep(0.004)
        ctxs = await asyncio.gather(*tasks)
        return Counter(c.deployment.id for c in ctxs if c.deployment)

    served = asyncio.run(main())
    assert served["d1"] > 3 * served["d0"], served


def test_latency_prefers_lowest_ttft() -> None:
    router, stub, _ = make("latency", latency_explore=0.0)
    stub.first_token_delay = {"d0": 0.05, "d1": 0.005}

    async def main() -> list[str]:
        return [(await serve_one(router)).deployment.id for _ in range(8)]  # type: ignore[union-attr]

    served = asyncio.run(main())
    assert served[:2] == ["d0", "d1"]  # unmeasured ones are tried first
    assert served[2:] == ["d1"] * 6
    assert router.health.get("d1").ttft < router.health.get("d0").ttft  # type: ignore[operator]


def test_latency_exploration_share() -> None:
    router, _, _ = make("latency", latency_explore=0.2)
    router.health.get("d0").ttft, router.health.get("d1").ttft = 0.01, 1.0
    picks = Counter(router.order("chat")[0].id for _ in range(10000))
    assert abs(picks["d1"] / 10000 - 0.1) < 0.02  # half of the random picks land on d1


def test_max_in_flight_is_respected() -> None:
    stub, clock = Stub(), Clock()
    deps = [DeploymentConfig(provider="stub", model="a", name="a", max_in_flight=1),
            DeploymentConfig(provider="stub", model="b", name="b")]
    router = Router({"chat": ModelConfig(deployments=deps)}, {"stub": stub}, clock=clock)
    router.started(deps[0])
    plan = router.plan("chat")
    assert [d.id for d in plan.deployments] == ["b"]
    assert [(d.id, why) for d, why in plan.skipped] == [("a", "at max_in_flight")]


def test_cool_down_after_n_failures_then_probe_after_t() -> None:
    router, stub, clock = make("fallback", cooldown_failures=2, cooldown_window=10,
                               cooldown_seconds=5)
    stub.fail = {"d0"}

    async def main() -> None:
        for _ in range(2):  # two failures within the window: d0 cools down
            assert outcomes(await serve_one(router)) == [("d0", "error"), ("d1", "ok")]
            clock.now += 1
        ctx = await serve_one(router)
        assert outcomes(ctx) == [("d0", "skipped"), ("d1", "ok")]
        assert stub.calls[-1] == "d1" and stub.calls.count("d0") == 2

        clock.now += 5  # T passed: a probe; it fails and cools d0 down again at once
        assert outcomes(await serve_one(router)) == [("d0", "error"), ("d1", "ok")]
        assert outcomes(await serve_one(router))[0] == ("d0", "skipped")

        stub.fail.clear()
        clock.now += 5  # the next probe succeeds: d0 is healthy again
        assert outcomes(await serve_one(router)) == [("d0", "ok")]
        assert outcomes(await serve_one(router)) == [("d0", "ok")]

    asyncio.run(main())


def test_failures_outside_the_window_do_not_add_up() -> None:
    router, stub, clock = make("fallback", cooldown_failures=2, cooldown_window=10)
    stub.fail = {"d0"}

    async def main() -> None:
        await serve_one(router)
        clock.now += 11
        await serve_one(router)
        assert not router.health.cooling("d0")
        clock.now += 1
        await serve_one(router)
        assert router.health.cooling("d0")

    asyncio.run(main())


def test_all_cooling_tries_least_recently_failed_first() -> None:
    router, stub, clock = make("fallback", n=3, cooldown_failures=1)
    stub.fail = {"d0", "d1", "d2"}
    for dep_id in ("d2", "d0", "d1"):
        router.health.failure(dep_id)
        clock.now += 1
    assert [d.id for d in router.order("chat")] == ["d2", "d0", "d1"]
    stub.fail.clear()
    ctx = asyncio.run(serve_one(router))
    assert outcomes(ctx) == [("d2", "ok")]
    assert not router.health.cooling("d2")  # it answered: healthy again
    assert [d.id for d in router.order("chat")] == ["d2"]
