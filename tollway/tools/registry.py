"""Platform tools by name: the ``Tool`` type, the ``ToolSource`` protocol, the registry.

Built-ins, MCP servers and installed packages' tools are all ``ToolSource``s:
``start()`` returns the tools they provide and ``close()`` releases what they hold.
``tools.sources.open_registry`` starts every source the config declares and
registers their tools through the same ``ToolRegistry.register`` path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from tollway.entrypoints import entry_points, load
from tollway.errors import InvalidRequest

__all__ = [
    "Tool",
    "ToolError",
    "ToolRegistry",
    "ToolSource",
    "function_name",
    "registered_source",
    "resolve_tools",
]

log = logging.getLogger("tollway.tools")

GROUP = "tollway.tools"  # entry points: tool-source factories of installed packages

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ToolError(Exception):
    """A tool failed in a way the model should be told about (bad input, refused, …)."""


def function_name(name: str) -> str:
    """The upstream-safe function name for a platform tool (``docs.search`` → ``docs__search``)."""
    return _UNSAFE.sub("_", name.replace(".", "__"))[:64]


@dataclass(frozen=True, slots=True)
class Tool:
    """A platform tool: what the model sees (name, description, schema) and how to run it."""

    name: str
    description: str
    parameters: dict[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[Any]]
    price_usd: Decimal = Decimal(0)
    timeout: float = 10.0
    function_name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.function_name:
            object.__setattr__(self, "function_name", function_name(self.name))

    def schema(self) -> dict[str, Any]:
        """The entry for the request's ``tools`` list sent upstream."""
        return {
            "type": "function",
            "function": {
                "name": self.function_name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolSource(Protocol):
    """Something that provides tools: a built-in or an MCP server."""

    async def start(self) -> list[Tool]: ...

    async def close(self) -> None: ...


class ToolRegistry:
    """Platform tools by name, and the sources that must be closed at shutdown."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._by_function: dict[str, str] = {}
        self._sources: list[ToolSource] = []

    def register(self, tool: Tool) -> None:
        """Add a tool; two tools may not share a name or an upstream function name."""
        if tool.name in self._tools:
            raise ValueError(f"platform tool {tool.name!r} is registered twice")
        other = self._by_function.get(tool.function_name)
        if other is not None:
            raise ValueError(f"platform tools {other!r} and {tool.name!r} clash upstream")
        self._tools[tool.name] = tool
        self._by_function[tool.function_name] = tool.name

    async def add_source(self, source: ToolSource) -> list[Tool]:
        """Start a source and register its tools (it is closed by ``close``)."""
        tools = await source.start()
        self._sources.append(source)
        for tool in tools:
            self.register(tool)
        return tools

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    async def close(self) -> None:
        """Close every source, newest first; one failing does not stop the others."""
        while self._sources:
            source = self._sources.pop()
            try:
                await source.close()
            except Exception:  # shutdown goes on for the other sources
                log.exception("closing tool source %r failed", source)


def resolve_tools(names: Iterable[str], registry: ToolRegistry) -> list[Tool]:
    """The tools for a request's ``platform_tools``; ``server.*`` means all of a server's.

    Raises ``InvalidRequest`` (400) naming every unknown tool.
    """
    out: dict[str, Tool] = {}
    unknown: list[str] = []
    for name in names:
        if not isinstance(name, str):
            unknown.append(repr(name))
            continue
        if name.endswith(".*"):
            prefix = name[:-1]
            matched = [registry.get(n) for n in registry.names() if n.startswith(prefix)]
            if not matched:
                unknown.append(name)
            for tool in matched:
                assert tool is not None
                out.setdefault(tool.name, tool)
            continue
        tool = registry.get(name)
        if tool is None:
            unknown.append(name)
        else:
            out.setdefault(name, tool)
    if unknown:
        available = ", ".join(registry.names()) or "none"
        raise InvalidRequest(
            f"Unknown platform tool(s): {', '.join(unknown)}. Available: {available}.",
            param="platform_tools",
            code="unknown_platform_tool",
        )
    return list(out.values())


def registered_source(name: str) -> Any:
    """The factory an installed package registers as ``name``; ``ValueError`` if none."""
    entry = entry_points(GROUP).get(name)
    if entry is None:
        known = ", ".join(sorted(entry_points(GROUP))) or "none installed"
        raise ValueError(f"unknown tool source {name!r} (known: {known})")
    return load(entry)
