"""A real MCP server (tests/tools/mcp_docs_server.py) over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tollway.chunks import Event, Finish, PlatformToolRecord, Start, TextDelta, ToolCallDelta
from tollway.context import RequestContext
from tollway.errors import InvalidRequest
from tollway.providers.base import ChatRequest
from tollway.tools.config import McpServerConfig, ToolsConfig
from tollway.tools.loop import run_with_tools
from tollway.tools.mcp_client import McpServer
from tollway.tools.registry import ToolError, resolve_tools
from tollway.tools.sources import open_registry

SERVER = str(Path(__file__).with_name("mcp_docs_server.py"))


def stdio(**options: Any) -> McpServerConfig:
    return McpServerConfig(command=sys.executable, args=[SERVER], **options)


def test_tools_listed_with_schemas_and_called() -> None:
    async def main() -> None:
        server = McpServer("docs", stdio(price_usd=Decimal("0.01"),
                                         prices={"add": Decimal("0")}), 5)
        tools = {tool.name: tool for tool in await server.start()}
        try:
            assert set(tools) == {"docs.search", "docs.add", "docs.fail", "docs.sleep"}
            search = tools["docs.search"]
            assert search.function_name == "docs__search"
            assert search.description.startswith("Search the documentation")
            assert search.parameters["required"] == ["query"]
            assert search.parameters["properties"]["limit"]["type"] == "integer"
            assert search.price_usd == Decimal("0.01") and tools["docs.add"].price_usd == 0
            # calls from several tasks at once share the one session
            found, total = await asyncio.gather(
                search.call({"query": "bill"}), tools["docs.add"].call({"a": 2, "b": 40}))
            assert found == "billing: Every request is one ledger entry."
            assert total == "42"
            with pytest.raises(ToolError, match="fail"):
                await tools["docs.fail"].call({"reason": "no"})
            with pytest.raises(ToolError):
                await tools["docs.add"].call({"a": "not a number"})
        finally:
            await server.close()

    asyncio.run(main())


def test_include_filter_and_timeout() -> None:
    async def main() -> None:
        server = McpServer("docs", stdio(include=["sleep"], timeout=0.3), 5)
        [sleep] = await server.start()
        try:
            assert sleep.name == "docs.sleep" and sleep.timeout == 0.3
            with pytest.raises(ToolError):  # the SDK's read timeout, reported as a tool error
                await sleep.call({"seconds": 2})
            assert await sleep.call({"seconds": 0}) == "awake"  # the session survived
        finally:
            await server.close()

    asyncio.run(main())


def test_unreachable_server() -> None:
    async def main() -> None:
        config = ToolsConfig(mcp_servers={"bad": McpServerConfig(
            command=sys.executable, args=["-c", "import sys; sys.exit(3)"], connect_timeout=5)})
        with pytest.raises(RuntimeError, match="MCP server 'bad' could not start"):
            await open_registry(config)
        optional = ToolsConfig(calculator={}, mcp_servers={"bad": McpServerConfig(
            command=sys.executable, args=["-c", "pass"], connect_timeout=5, required=False)})
        registry = await open_registry(optional)
        assert registry.names() == ["calculator"]
        await registry.close()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, SERVER, "--http", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("the MCP HTTP server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


def test_streamable_http(http_server: str) -> None:
    async def main() -> None:
        server = McpServer("web", McpServerConfig(url=http_server), 5)
        tools = {tool.name: tool for tool in await server.start()}
        try:
            assert "web.search" in tools
            assert await tools["web.add"].call({"a": 1, "b": 2}) == "3"
        finally:
            await server.close()

    asyncio.run(main())


def test_loop_calls_mcp_tools_through_the_registry() -> None:
    """A scripted model calls docs.search; the result comes back from the real server."""

    async def model(request: ChatRequest) -> AsyncIterator[Event]:
        yield Start(model="scripted")
        results = [m for m in request.messages if m["role"] == "tool"]
        if not results:
            yield ToolCallDelta(0, '{"query": "stream', "call_1", "docs__search")
            yield ToolCallDelta(0, 'ing"}')
            yield Finish("tool_calls")
            return
        yield TextDelta(f"Found: {results[0]['content']}")
        yield Finish("stop")

    async def main() -> list[Event]:
        registry = await open_registry(ToolsConfig(calculator={}, mcp_servers={"docs": stdio()}))
        try:
            with pytest.raises(InvalidRequest, match="Unknown platform tool.*docs.nope"):
                resolve_tools(["docs.nope"], registry)
            tools = resolve_tools(["docs.*", "calculator"], registry)
            assert [t.name for t in tools][-1] == "calculator" and len(tools) == 5
            request = ChatRequest(body={}, model="m", stream=True, include_usage=False,
                                  messages=[{"role": "user", "content": "docs on streaming?"}])
            ctx = RequestContext(request_id="r", request=request)
            return [e async for e in run_with_tools(request, tools, model, ctx, ToolsConfig())]
        finally:
            await registry.close()

    events = asyncio.run(main())
    [record] = [e for e in events if isinstance(e, PlatformToolRecord)]
    assert record.name == "docs.search" and record.error is None
    assert record.result == "streaming: Tollway streams every chunk as it arrives."
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.endswith("Found: streaming: Tollway streams every chunk as it arrives.")


def test_server_that_never_answers_times_out_at_start() -> None:
    async def main() -> None:
        hang = McpServerConfig(command=sys.executable, args=["-c", "import time; time.sleep(60)"],
                               connect_timeout=0.5)
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await McpServer("hang", hang, 5).start()
        assert time.perf_counter() - started < 5

    asyncio.run(main())
