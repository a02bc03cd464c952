"""The gateway's wiring: what runs at each step of the request path.

Built once by ``create_app``; features plug in here (auth, request hooks,
admission, response stages, pricing, settlement) so that ``api/chat.py`` stays
the same whichever features are on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tollway.chunks import Event
from tollway.config import Settings
from tollway.context import RequestContext
from tollway.pipeline.budget import metered_call
from tollway.pipeline.compose import Stage
from tollway.pipeline.meter import Pricer
from tollway.providers.base import ChatRequest, Provider
from tollway.routing.fallback import open_stream
from tollway.routing.redact import SecretRedactor
from tollway.routing.select import Router

__all__ = ["Gateway", "RequestHook", "Settler"]

log = logging.getLogger("tollway")

RequestHook = Callable[[RequestContext], Awaitable[None]]
Settler = Callable[[RequestContext], Awaitable[None]]
StageFactory = Callable[[RequestContext], Stage | None]
Authenticator = Callable[[str | None], Awaitable[Any]]
SourceWrapper = Callable[
    [ChatRequest, RequestContext, Callable[[ChatRequest], AsyncIterator[Event]]],
    AsyncIterator[Event] | None,
]


@dataclass
class Gateway:
    """Everything a request needs, built once at start."""

    settings: Settings
    router: Router
    providers: dict[str, Provider]
    redactor: SecretRedactor | None = None  # applied to every upstream error
    authenticate: Authenticator | None = None
    request_hooks: list[RequestHook] = field(default_factory=list)
    admission: list[RequestHook] = field(default_factory=list)
    source_wrappers: list[SourceWrapper] = field(default_factory=list)
    stage_factories: list[StageFactory] = field(default_factory=list)
    pricer: Pricer | None = None
    settlers: list[Settler] = field(default_factory=list)
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def source(self, ctx: RequestContext) -> AsyncIterator[Event]:
        """The model's events for this request: routed, maybe wrapped (tool loop)."""
        assert ctx.request is not None and ctx.requested_model is not None
        alias = ctx.requested_model
        redactor = self.redactor

        def route(request: ChatRequest) -> AsyncIterator[Event]:
            return open_stream(self.router, alias, request, ctx, redactor)

        budget = ctx.budget
        if budget is None:
            call_model = route
        else:  # billing: every upstream call is covered by, and held to, the reservation

            def call_model(request: ChatRequest) -> AsyncIterator[Event]:
                return metered_call(request, ctx, budget, route)

        for wrap in self.source_wrappers:
            wrapped = wrap(ctx.request, ctx, call_model)
            if wrapped is not None:
                return wrapped
        return call_model(ctx.request)

    def stages(self, ctx: RequestContext) -> list[Stage]:
        """Response stages for this request, in order, ending with the meter."""
        from tollway.pipeline.meter import usage_meter

        out: list[Stage] = []
        for factory in self.stage_factories:
            stage = factory(ctx)
            if stage is not None:
                out.append(stage)
        out.append(usage_meter(self.pricer))
        return out

    async def settle(self, ctx: RequestContext) -> None:
        """Run every settler; cancellation of the request cannot skip any of them.

        Settlers run inline (no task per request). If the request's task is cancelled
        while one of them awaits, that settler and the rest finish in a background
        task (settlers are idempotent) and the cancellation proceeds.
        """
        settlers = self.settlers
        for index, settler in enumerate(settlers):
            try:
                await settler(ctx)
            except asyncio.CancelledError:
                task = asyncio.ensure_future(self._run_settlers(ctx, settlers[index:]))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                raise
            except Exception:  # settlement must go on for the other settlers
                log.exception("settlement step %s failed for %s", settler, ctx.request_id)

    async def _run_settlers(self, ctx: RequestContext, settlers: list[Settler]) -> None:
        for settler in settlers:
            try:
                await settler(ctx)
            except Exception:  # settlement must go on for the other settlers
                log.exception("settlement step %s failed for %s", settler, ctx.request_id)

    async def drain(self) -> None:
        """Wait for settlements still running (shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
