"""Plugs platform tools into the gateway: start-up, shutdown and the source wrapper.

``install_tools(app, config)`` opens the registry when the app starts (MCP
servers connect then), closes it when the app stops, and wraps each request's
model source with the tool loop when the request attaches platform tools:
``platform_tools`` in the body, else ``default_tools(ctx)`` (the key's, the
account's or the global default from ``Settings.default_for``). An empty list
turns the defaults off for one request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from tollway.chunks import Event
from tollway.context import RequestContext
from tollway.errors import InvalidRequest
from tollway.pipeline.tools import CallModel, attach_platform_tools, run_with_tools
from tollway.providers.base import ChatRequest
from tollway.tools.config import ToolsConfig
from tollway.tools.execute import ResultInspector
from tollway.tools.registry import Tool, ToolRegistry, open_registry, resolve_tools

if TYPE_CHECKING:
    from tollway.app import TollwayApp

__all__ = ["DefaultTools", "PlatformTools", "install_tools"]

DefaultTools = Callable[[RequestContext], list[str] | None]


class PlatformTools:
    """The running tool registry and the wrapper the gateway calls per request."""

    def __init__(
        self,
        config: ToolsConfig,
        inspect: ResultInspector | None = None,
        default_tools: DefaultTools | None = None,
    ) -> None:
        self.config = config
        self.inspect = inspect
        self.default_tools = default_tools
        self.registry: ToolRegistry | None = None

    async def start(self) -> None:
        self.registry = await open_registry(self.config)

    async def close(self) -> None:
        if self.registry is not None:
            await self.registry.close()
            self.registry = None

    def tools_for(self, request: ChatRequest, ctx: RequestContext) -> list[Tool] | None:
        """The platform tools this request attaches (None: none)."""
        names = request.extensions.get("platform_tools")
        if names is None and self.default_tools is not None:
            names = self.default_tools(ctx)
        if names is None:
            return None
        if not isinstance(names, list):
            raise InvalidRequest("platform_tools must be a list of tool names.",
                                 param="platform_tools")
        if not names:
            return None
        if self.registry is None:
            raise InvalidRequest("Platform tools are not available.", param="platform_tools")
        return resolve_tools(names, self.registry)

    async def attach(self, ctx: RequestContext) -> None:
        """Request hook (before admission): the upstream will read the platform tools'
        schemas, so the reservation must count them."""
        request = ctx.request
        if request is not None:
            tools = self.tools_for(request, ctx)
            if tools:
                attach_platform_tools(request, tools)

    def wrap(
        self, request: ChatRequest, ctx: RequestContext, call_model: CallModel
    ) -> AsyncIterator[Event] | None:
        """The tool loop for this request, or None when it attaches no platform tool."""
        tools = self.tools_for(request, ctx)
        if not tools:
            return None
        return run_with_tools(request, tools, call_model, ctx, self.config, inspect=self.inspect)


def install_tools(
    app: TollwayApp,
    config: ToolsConfig,
    inspect: ResultInspector | None = None,
    default_tools: DefaultTools | None = None,
) -> PlatformTools:
    """Register the tool feature's start, stop and source wrapper on ``app``.

    ``inspect`` sees each result before the model and the client do (a firewall);
    ``default_tools`` names the tools of a request that names none.
    """
    feature = PlatformTools(config, inspect, default_tools)
    app.gateway.on_start.append(feature.start)
    app.gateway.on_stop.append(feature.close)
    app.gateway.request_hooks.append(feature.attach)
    app.gateway.source_wrappers.append(feature.wrap)
    return feature
