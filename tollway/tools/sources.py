"""The tool sources a config declares: built-ins, MCP servers, installed packages' tools.

``open_registry(config)`` starts each (built-ins first, then MCP servers, then the
``tools.sources`` entries) and registers their tools. A source from another package
is a factory registered under the ``tollway.tools`` entry-point group (see
``tollway.entrypoints``), called as ``factory(options, timeout)`` with the options the
config gives it; it returns a ``ToolSource``.
"""

from __future__ import annotations

import logging

from tollway.tools.config import ToolsConfig
from tollway.tools.registry import ToolRegistry, ToolSource, registered_source

__all__ = ["builtin_sources", "open_registry"]

log = logging.getLogger("tollway.tools")

def builtin_sources(config: ToolsConfig) -> list[ToolSource]:
    """A source for each built-in the config declares."""
    from tollway.tools.calculator import CalculatorSource
    from tollway.tools.clock import ClockSource
    from tollway.tools.http_fetch import HttpFetchSource

    sources: list[ToolSource] = []
    if config.calculator is not None:
        sources.append(CalculatorSource(config.calculator, config.timeout))
    if config.clock is not None:
        sources.append(ClockSource(config.clock, config.timeout))
    if config.http_fetch is not None:
        sources.append(HttpFetchSource(config.http_fetch, config.timeout))
    for name, options in config.sources.items():
        sources.append(registered_source(name)(dict(options), config.timeout))
    return sources


async def open_registry(config: ToolsConfig) -> ToolRegistry:
    """Start every declared source (built-ins, then MCP servers) and register their tools."""
    from tollway.tools.mcp_client import McpServer

    registry = ToolRegistry()
    try:
        for source in builtin_sources(config):
            await registry.add_source(source)
        for name, server in config.mcp_servers.items():
            try:
                await registry.add_source(McpServer(name, server, config.timeout))
            except Exception as exc:
                if server.required:
                    raise RuntimeError(f"MCP server {name!r} could not start: {exc}") from exc
                log.warning("MCP server %r could not start, its tools are off: %s", name, exc)
    except BaseException:
        await registry.close()
        raise
    return registry
