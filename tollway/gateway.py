"""The gateway: what runs at each step of the request path, from the plugins' hooks.

Built once by ``create_app`` from sealed ``Hooks``; ``api/chat.py`` calls one method
per step (authenticate, prepare, admit, source, stages, response fields, settle) and
stays the same whichever plugins are on. The order inside a step is the hooks' phase
order (``tollway.plugins.contract.Phase``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tollway.chunks import Event
from tollway.config import Settings
from tollway.context import RequestContext
from tollway.pipeline.budget import metered_call
from tollway.pipeline.compose import Stage
from tollway.pipeline.meter import usage_meter
from tollway.plugins.contract import Caller, Settler
from tollway.plugins.hooks import Hooks
from tollway.providers.base import ChatRequest, Provider
from tollway.routing.fallback import open_stream
from tollway.routing.redact import SecretRedactor
from tollway.routing.select import Router

__all__ = ["Gateway"]

log = logging.getLogger("tollway")


@dataclass
class Gateway:
    """Everything a request needs, built once at start."""

    settings: Settings
    router: Router
    providers: dict[str, Provider]
    hooks: Hooks
    redactor: SecretRedactor | None = None  # applied to every upstream error
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def has_auth(self) -> bool:
        """Whether an authenticator is registered (else every caller is anonymous)."""
        return self.hooks.authenticate is not None

    async def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller of a request with this ``Authorization`` header (None: no auth)."""
        authenticate = self.hooks.authenticate
        return None if authenticate is None else await authenticate(authorization)

    async def prepare(self, ctx: RequestContext) -> None:
        """Every request hook, in phase order (before admission)."""
        for hook in self.hooks.request_hooks:
            await hook(ctx)

    async def admit(self, ctx: RequestContext) -> None:
        """Every admitter, in phase order; the first refusal raises."""
        for admit in self.hooks.admitters:
            await admit(ctx)

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

        for wrap in self.hooks.source_wrappers:
            wrapped = wrap(ctx.request, ctx, call_model)
            if wrapped is not None:
                return wrapped
        return call_model(ctx.request)

    def stages(self, ctx: RequestContext) -> list[Stage]:
        """Response stages for this request, in phase order, ending with the meter."""
        out: list[Stage] = []
        for factory in self.hooks.stages:
            stage = factory(ctx)
            if stage is not None:
                out.append(stage)
        out.append(usage_meter(self.hooks.price))
        return out

    def filters_response(self, ctx: RequestContext) -> bool:
        """Whether a FILTER-phase stage (a response firewall) applies to this request:
        then its output must pass through the stages, never be relayed as it is."""
        return any(factory(ctx) is not None for factory in self.hooks.filter_stages)

    def response_fields(self, ctx: RequestContext) -> dict[str, Any]:
        """The plugins' extra top-level fields for a whole (non-streaming) response."""
        out: dict[str, Any] = {}
        for fields in self.hooks.fields:
            extra = fields(ctx)
            if extra:
                out.update(extra)
        return out

    async def start(self) -> None:
        """Every plugin's start hook, in plugin order."""
        for hook in self.hooks.starts:
            await hook()

    async def stop(self) -> None:
        """Wait for running settlements, then every stop hook in reverse plugin order."""
        await self.drain()
        for hook in reversed(self.hooks.stops):
            await hook()

    async def settle(self, ctx: RequestContext) -> None:
        """Run every settler (money, then trace); cancellation cannot skip any of them.

        Settlers run inline (no task per request). If the request's task is cancelled
        while one of them awaits, that settler and the rest finish in a background
        task (settlers are idempotent) and the cancellation proceeds.
        """
        settlers = self.hooks.settlers
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

    async def _run_settlers(self, ctx: RequestContext, settlers: tuple[Settler, ...]) -> None:
        for settler in settlers:
            try:
                await settler(ctx)
            except Exception:  # settlement must go on for the other settlers
                log.exception("settlement step %s failed for %s", settler, ctx.request_id)

    async def drain(self) -> None:
        """Wait for settlements still running (shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
