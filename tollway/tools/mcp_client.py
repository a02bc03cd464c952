"""MCP servers as platform tools, through the official ``mcp`` SDK.

Each configured server is one long-lived ``mcp.Client`` session (a stdio
subprocess or a streamable-HTTP endpoint). Its tools become platform tools
named ``<server>.<tool>`` with the input schemas the server lists.

The SDK runs on anyio: a client's context must be entered and left by the
same task, so each server gets a runner task that opens the session, lists
the tools, then waits until ``close()``. Calls come from request tasks and
use the open session. If the session dies (the process exits, the endpoint
goes away), the next call reconnects once before giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ListToolsResult

from tollway.routing.redact import SecretRedactor, mcp_server_secrets
from tollway.tools.config import McpServerConfig
from tollway.tools.registry import Tool, ToolError

__all__ = ["McpServer", "result_value"]

log = logging.getLogger("tollway.tools")

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def result_value(result: CallToolResult) -> Any:
    """What the model gets from a tool result: its text, else its structured content."""
    texts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            texts.append(f"[{kind}: {getattr(block, 'mime_type', '')}]")
        elif kind in ("resource", "resource_link"):
            resource = getattr(block, "resource", None)
            uri = getattr(block, "uri", None) or getattr(resource, "uri", "")
            texts.append(f"[resource: {uri}]")
    if result.is_error:
        raise ToolError("; ".join(texts) or "the MCP tool reported an error")
    if texts:
        return "\n".join(texts)
    return result.structured_content


class McpServer:
    """One MCP server: its session, its tools, its calls."""

    def __init__(self, name: str, config: McpServerConfig, default_timeout: float) -> None:
        self.name = name
        self.config = config
        self.timeout = config.timeout or default_timeout
        self._client: Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._redactor = SecretRedactor(mcp_server_secrets(config))

    def __repr__(self) -> str:
        return f"McpServer({self.name!r})"

    async def _client_for(self, stack: contextlib.AsyncExitStack) -> Client:
        """A new client for the configured transport (its HTTP pool closed with ``stack``)."""
        if self.config.command is not None:
            params = StdioServerParameters(
                command=self.config.command,
                args=list(self.config.args),
                env=dict(self.config.env) or None,
                cwd=self.config.cwd,
            )
            return Client(stdio_client(params, errlog=sys.stderr), mode="auto", cache=None)
        assert self.config.url is not None
        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers=dict(self.config.headers),
            timeout=httpx2.Timeout(self.config.connect_timeout, read=300.0),
        ))
        transport = streamable_http_client(self.config.url, http_client=http)
        return Client(transport, mode="auto", cache=None)

    async def _connect(self) -> list[Any]:
        """Start the runner task; return the server's tool listing once it is open."""
        ready: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        self._stop = stop
        self._runner = asyncio.create_task(self._run(ready, stop), name=f"mcp:{self.name}")
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                return await asyncio.shield(ready)
        except BaseException:
            await self._shutdown(cancel=not ready.done())
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: the error is the one being raised
            raise

    async def _run(self, ready: asyncio.Future[list[Any]], stop: asyncio.Event) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(await self._client_for(stack))
                listing: list[Any] = []
                cursor: str | None = None
                for _ in range(100):  # pages
                    page: ListToolsResult = await client.list_tools(cursor=cursor)
                    listing.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self._client = client
                if not ready.done():
                    ready.set_result(listing)
                await stop.wait()
        except Exception as exc:  # noqa: BLE001 - handed to start() or logged: the SDK raises many kinds
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("MCP server %r session ended: %s", self.name, exc)
        finally:
            self._client = None
            if not ready.done():
                ready.set_exception(ToolError(f"MCP server {self.name!r} closed"))

    async def _shutdown(self, *, cancel: bool = False) -> None:
        """Stop the runner: let it leave the session cleanly, or cancel it if stuck."""
        runner, self._runner = self._runner, None
        if self._stop is not None:
            self._stop.set()
        if runner is None:
            return
        if not cancel:
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(runner)
                return
            except TimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001 - a session failing while it closes is closed
                log.debug("MCP server %r closed with %s", self.name, exc)
                return
        runner.cancel()
        with contextlib.suppress(BaseException):
            await runner

    async def start(self) -> list[Tool]:
        """Connect and describe the server's tools as platform tools."""
        listing = await self._connect()
        include = set(self.config.include) if self.config.include is not None else None
        tools: list[Tool] = []
        for item in listing:
            if include is not None and item.name not in include:
                continue
            tools.append(Tool(
                name=f"{self.name}.{item.name}",
                description=item.description or f"{item.name} (MCP server {self.name})",
                parameters=item.input_schema or _EMPTY_SCHEMA,
                call=self._caller(item.name),
                price_usd=self.config.prices.get(item.name, self.config.price_usd),
                timeout=self.timeout,
            ))
        return tools

    def _caller(self, tool_name: str) -> Any:
        async def call(arguments: dict[str, Any]) -> Any:
            return await self.call(tool_name, arguments)

        return call

    async def _session(self) -> Client:
        """The open client; reconnect once if the session has died."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                log.info("MCP server %r: reconnecting", self.name)
                await self._shutdown()
                try:
                    await self._connect()
                except Exception as exc:  # noqa: BLE001 - reported to the model as a tool error
                    raise ToolError(f"MCP server {self.name!r} is unavailable: {exc}") from None
            assert self._client is not None
            return self._client

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Call one tool on the server; failures become ``ToolError`` (without the
        secrets the server was sent: its error text may echo them)."""
        try:
            return await self._call(tool_name, arguments)
        except ToolError as exc:
            if not self._redactor:
                raise
            raise ToolError(self._redactor.text(str(exc))) from None

    async def _call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        client = await self._session()
        try:
            result = await client.call_tool(
                tool_name, arguments, read_timeout_seconds=self.timeout
            )
        except Exception as exc:  # noqa: BLE001 - MCPError, transport errors: told to the model
            raise ToolError(f"MCP call {self.name}.{tool_name} failed: {exc}") from None
        return result_value(result)

    async def close(self) -> None:
        await self._shutdown()
