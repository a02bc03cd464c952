"""The entry point: one call at settlement feeds traces, metrics, logs and spans."""

from __future__ import annotations

import asyncio
import importlib
import time

import pytest

from tests.tracing.conftest import make_ctx
from tollway.context import RequestContext
from tollway.tracing.config import TracingConfig
from tollway.tracing.observability import Observability


def test_request_finished_feeds_everything(dsn: str) -> None:
    async def main() -> None:
        config = TracingConfig(store_bodies_accounts=frozenset({"acct_opt"}))
        obs = Observability(config, database=dsn, configure_logging=False)
        await obs.start()
        try:
            obs.request_finished(make_ctx("req_x"), bodies={"request": "kept?"})
            obs.request_finished(make_ctx("req_y", account_id="acct_opt"), bodies={"r": "kept"})
            broken = RequestContext(request_id="req_broken")
            broken.timings = None  # type: ignore[assignment]
            obs.request_finished(broken)  # never raises
            deadline = time.monotonic() + 1.0
            while (await obs.store.get("req_y", None)) is None:  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            x = await obs.store.get("req_x", "acct_1")  # type: ignore[union-attr]
            y = await obs.store.get("req_y", "acct_opt")  # type: ignore[union-attr]
            assert x is not None and x["bodies"] is None
            assert y is not None and y["bodies"] == {"r": "kept"}
            assert obs.wants_bodies("acct_opt") and not obs.wants_bodies("acct_1")
            text = obs.metrics.render()[0].decode()
            assert 'tollway_requests_total{deployment="sim-a",model="gpt-test",status="200"} 2.0' \
                in text
        finally:
            await obs.stop()

    asyncio.run(main())


def test_metrics_endpoint_and_inflight_stage(tmp_path: object) -> None:
    async def main() -> None:
        obs = Observability(TracingConfig(enabled=False), configure_logging=False)
        await obs.start()
        ctx = make_ctx()
        stage = obs.inflight_stage(ctx)

        async def source():  # type: ignore[no-untyped-def]
            yield 1
            yield 2

        seen = []
        async for event in stage(source(), ctx):
            seen.append(event)
            assert b"tollway_inflight_streams 1.0" in obs.metrics.render()[0]
        assert seen == [1, 2]
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await obs.metrics_endpoint({}, None, send)
        assert sent[0]["status"] == 200
        assert b"tollway_inflight_streams 0.0" in sent[1]["body"]  # type: ignore[operator]
        await obs.stop()

    asyncio.run(main())


@pytest.mark.parametrize("name", [
    "tollway.tracing.api", "tollway.tracing.cli", "tollway.storage.migrate",
    "tollway.tracing.config", "tollway.tracing.logs", "tollway.tracing.metrics",
    "tollway.tracing.observability", "tollway.tracing.otel", "tollway.tracing.record",
    "tollway.tracing.store", "tollway.tracing.writer",
])
def test_exported_members(name: str) -> None:
    module = importlib.import_module(name)
    for member in module.__all__:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"
