"""Per-chunk cost of the router's committed-stream wrapper (``open_stream``).

Compares, over a provider that yields N events with no I/O:
  raw        iterating the provider directly
  open_stream   the router (one lazily re-armed timer for idle + total)
  timeout/chunk a wrapper with ``asyncio.timeout`` around each ``__anext__``

Run: ``python benchmarks/deadline_overhead.py``
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tollway.chunks import Event, Start, TextDelta  # noqa: E402
from tollway.config import DeploymentConfig, ModelConfig  # noqa: E402
from tollway.context import RequestContext  # noqa: E402
from tollway.providers.base import ChatRequest  # noqa: E402
from tollway.routing.fallback import open_stream  # noqa: E402
from tollway.routing.select import Router  # noqa: E402

N = 200_000
DELTA = TextDelta("x")


class Flood:
    async def stream(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]:
        yield Start(model="m")
        for _ in range(N):
            yield DELTA

    async def aclose(self) -> None:
        return None


async def per_chunk_timeout(events: AsyncIterator[Event], idle: float) -> AsyncIterator[Event]:
    anext_ = events.__aiter__().__anext__
    while True:
        try:
            async with asyncio.timeout(idle):
                event = await anext_()
        except StopAsyncIteration:
            return
        yield event


async def main() -> None:
    dep = DeploymentConfig(provider="f", model="m", name="d")
    router = Router({"c": ModelConfig(deployments=[dep])}, {"f": Flood()})
    req = ChatRequest(body={}, model="c", stream=True, include_usage=False, messages=[])

    async def timed(label: str, stream: AsyncIterator[Event]) -> float:
        t = time.perf_counter()
        async for _ in stream:
            pass
        per = (time.perf_counter() - t) / N * 1e6
        print(f"{label:14s} {per:6.3f} us/chunk")  # noqa: T201
        return per

    for _ in range(2):
        raw = await timed("raw", Flood().stream(req, dep))
        routed = await timed("open_stream", open_stream(router, "c", req, RequestContext("r")))
        tpc = await timed("timeout/chunk", per_chunk_timeout(Flood().stream(req, dep), 120))
        print(f"  open_stream overhead {routed - raw:.3f} us; timeout/chunk {tpc - raw:.3f} us")  # noqa: T201


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main()) if hasattr(uvloop, "run") else asyncio.run(main())  # type: ignore[func-returns-value]
