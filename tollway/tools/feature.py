"""Plugs platform tools into the gateway: start-up, shutdown, name resolution, the loop.

``install_tools(app, config)`` opens the registry when the app starts (MCP
servers connect then) and closes it when the app stops. Per request, a request
hook resolves the platform tools it attaches (``platform_tools`` in the body,
else ``default_tools(ctx)``: the key's, the account's or the global default from
``Settings.default_for``) into ``ctx.platform_tools``, before admission, so an
unknown name is a 400 that reserves nothing and reaches no upstream; the source
wrapper then runs the tool loop around the model. An empty list turns the
defaults off for one request. With no tool declared, only the hook is installed:
every name is unknown.
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
        if self.config.declared:
            self.registry = await open_registry(self.config)
        else:  # an empty registry, without importing the MCP SDK
            self.registry = ToolRegistry()

    async def close(self) -> None:
        if self.registry is not None:
            await self.registry.close()
            self.registry = None

    def tools_for(self, ctx: RequestContext) -> list[Tool] | None:
        """The platform tools ``ctx``'s request attaches; a 400 names unknown ones."""
        request = ctx.request
        names = request.extensions.get("platform_tools") if request is not None else None
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
        """A ``Gateway.request_hooks`` entry: resolve the request's tools before admission,
        and add their schemas to the request, so the reservation counts what the upstream
        will read."""
        ctx.platform_tools = tools = self.tools_for(ctx)
        if tools and ctx.request is not None:
            attach_platform_tools(ctx.request, tools)

    def wrap(
        self, request: ChatRequest, ctx: RequestContext, call_model: CallModel
    ) -> AsyncIterator[Event] | None:
        """The tool loop for this request, or None when it attaches no platform tool."""
        tools: list[Tool] | None = ctx.platform_tools
        if not tools:
            return None
        return run_with_tools(request, tools, call_model, ctx, self.config, inspect=self.inspect)


def install_tools(
    app: TollwayApp,
    config: ToolsConfig,
    inspect: ResultInspector | None = None,
    default_tools: DefaultTools | None = None,
) -> PlatformTools:
    """Register the tool feature's start, stop, request hook and source wrapper on ``app``.

    ``inspect`` sees each result before the model and the client do (a firewall);
    ``default_tools`` names the tools of a request that names none. With no tool
    declared only the request hook is registered (it refuses every name).
    """
    feature = PlatformTools(config, inspect, default_tools)
    gw = app.gateway
    gw.on_start.append(feature.start)
    gw.on_stop.append(feature.close)
    gw.request_hooks.append(feature.attach)
    if config.declared:
        gw.source_wrappers.append(feature.wrap)
    return feature
