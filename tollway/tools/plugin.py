"""The platform tools plugin: start-up, shutdown, name resolution, the loop.

``ToolsPlugin().register(host)`` opens the registry when the app starts (MCP
servers connect then) and closes it when the app stops. Per request, a request
hook resolves the platform tools it attaches (``platform_tools`` in the body,
else ``default_tools(ctx)``: the key's, the account's or the global default from
``Settings.default_for``) into ``ctx.platform_tools``, before admission, so an
unknown name is a 400 that reserves nothing and reaches no upstream; the source
wrapper then runs the tool loop around the model. An empty list turns the
defaults off for one request. With no tool declared, only the hook is installed:
every name is unknown. Each result passes the host's tool-result inspectors (the
firewall) before the model and the client see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from tollway.chunks import Event
from tollway.context import RequestContext
from tollway.errors import InvalidRequest
from tollway.plugins.contract import Host, Phase
from tollway.providers.base import ChatRequest
from tollway.tools.config import ToolsConfig
from tollway.tools.execute import ResultInspector
from tollway.tools.loop import CallModel, attach_platform_tools, run_with_tools
from tollway.tools.registry import Tool, ToolRegistry, resolve_tools
from tollway.tools.sources import open_registry

__all__ = ["DefaultTools", "PlatformTools", "ToolsPlugin"]

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


class ToolsPlugin:
    """Platform tools as a plugin (``settings.tools``; defaults from ``Settings.default_for``)."""

    name = "tools"

    def __init__(self) -> None:
        self.feature: PlatformTools | None = None  # once registered

    def register(self, host: Host) -> None:
        settings = host.settings
        config: ToolsConfig = settings.tools

        def default_tools(ctx: RequestContext) -> list[str] | None:
            return settings.default_for(  # type: ignore[no-any-return]
                "platform_tools", key_id=ctx.key_id, account_id=ctx.account_id,
                account_name=getattr(ctx.account, "account_name", None))

        if not config.declared:
            # nothing to run: the feature only refuses the names a request attaches
            # (its own, or a default's: a default naming tools is then an error too)
            defaults: list[Any] = [settings.defaults, *settings.account_defaults.values(),
                                   *settings.key_defaults.values()]
            named = any(d.platform_tools for d in defaults)
            feature = PlatformTools(config, default_tools=default_tools if named else None)
        else:
            feature = PlatformTools(config, inspect=host.inspect_tool_result,
                                    default_tools=default_tools)
        self.feature = feature
        host.on_start(feature.start)
        host.on_stop(feature.close)
        host.request_hook(feature.attach, Phase.EXTEND)
        if config.declared:
            host.source_wrapper(feature.wrap, Phase.EXTEND)
