"""Tool config, the registry, name resolution and the per-request wrapper."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from tollway.chunks import Event, Finish, PlatformToolRecord, TextDelta
from tollway.context import RequestContext
from tollway.errors import ContentBlocked, InvalidRequest
from tollway.providers.base import ChatRequest
from tollway.tools.config import ToolsConfig
from tollway.tools.plugin import PlatformTools
from tollway.tools.registry import Tool, ToolRegistry, function_name, resolve_tools

MODULES = ["config", "registry", "calculator", "clock", "http_fetch", "mcp_client", "execute",
           "plugin"]


@pytest.mark.parametrize("module", [f"tollway.tools.{m}" for m in MODULES] + [
    "tollway.tools.loop"])
def test_exports_exist(module: str) -> None:
    loaded = importlib.import_module(module)
    assert loaded.__all__ and all(hasattr(loaded, name) for name in loaded.__all__)


def test_config_parses_and_rejects() -> None:
    config = ToolsConfig.model_validate({
        "calculator": {"price_usd": "0.001"}, "clock": {}, "max_rounds": 3,
        "http_fetch": {"allow_hosts": ["Docs.Python.org."], "allow_addresses": ["10.0.0.0/8"]},
        "mcp_servers": {"docs": {"command": "python", "args": ["s.py"]},
                        "web": {"url": "http://127.0.0.1:9/mcp"}},
        "format": {"result": "{name} → {result}"},
    })
    assert config.declared and config.http_fetch is not None
    assert config.http_fetch.allow_hosts == ["docs.python.org"]
    assert not ToolsConfig().declared
    bad: list[dict[str, Any]] = [
        {"mcp_servers": {"docs": {}}},
        {"mcp_servers": {"docs": {"command": "x", "url": "http://x"}}},
        {"mcp_servers": {"bad.name": {"command": "x"}}},
        {"mcp_servers": {"clock": {"command": "x"}}},
        {"format": {"result": "{name} {secret.__class__}"}},
        {"calculator": {"unknown": 1}},
        {"http_fetch": {"allow_hosts": []}},
        {"max_rounds": 0},
    ]
    for data in bad:
        with pytest.raises(ValidationError):
            ToolsConfig.model_validate(data)


def _tool(name: str) -> Tool:
    async def run(arguments: dict[str, Any]) -> Any:
        return name

    return Tool(name=name, description=name, parameters={"type": "object"}, call=run)


def test_registry_names_and_resolution() -> None:
    assert function_name("docs.search") == "docs__search"
    assert function_name("my srv.get/thing") == "my_srv__get_thing"
    registry = ToolRegistry()
    for name in ("calculator", "docs.search", "docs.add"):
        registry.register(_tool(name))
    with pytest.raises(ValueError, match="twice"):
        registry.register(_tool("docs.add"))
    with pytest.raises(ValueError, match="clash"):
        registry.register(_tool("docs__add"))
    assert [t.name for t in resolve_tools(["docs.*", "calculator", "docs.add"], registry)] == [
        "docs.add", "docs.search", "calculator"]
    with pytest.raises(InvalidRequest) as info:
        resolve_tools(["calculator", "web.fetch", "mail.*"], registry)
    assert info.value.status == 400 and info.value.param == "platform_tools"
    assert "web.fetch, mail.*" in info.value.message
    assert "Available: calculator, docs.add, docs.search" in info.value.message


def _request(**extensions: Any) -> ChatRequest:
    return ChatRequest(body={}, model="m", stream=True, include_usage=False,
                       messages=[{"role": "user", "content": "x"}], extensions=extensions)


async def _model(request: ChatRequest) -> AsyncIterator[Event]:
    yield Finish("stop")


def _ctx(request: ChatRequest, key_id: str | None = "key_1") -> RequestContext:
    return RequestContext(request_id="r", key_id=key_id, request=request)


def test_resolution_defaults_and_errors() -> None:
    async def main() -> None:
        feature = PlatformTools(ToolsConfig(calculator={}),
                                default_tools=lambda ctx: ["calculator"] if ctx.key_id else None)
        with pytest.raises(InvalidRequest, match="not available"):
            feature.tools_for(_ctx(_request()))  # not started
        await feature.start()
        try:
            assert feature.tools_for(_ctx(_request(platform_tools=[]))) is None
            tools = feature.tools_for(_ctx(_request()))  # the default
            assert tools is not None and [t.name for t in tools] == ["calculator"]
            with pytest.raises(InvalidRequest, match="list of tool names"):
                feature.tools_for(_ctx(_request(platform_tools="calculator")))
            with pytest.raises(InvalidRequest, match="clock"):
                feature.tools_for(_ctx(_request(platform_tools=["clock"])))
            ctx = _ctx(_request())
            await feature.attach(ctx)  # the request hook
            assert ctx.platform_tools == tools
            assert feature.wrap(ctx.request, ctx, _model) is not None  # type: ignore[arg-type]
        finally:
            await feature.close()
        assert feature.tools_for(_ctx(_request(), key_id=None)) is None
        assert PlatformTools(ToolsConfig(calculator={})).tools_for(_ctx(_request())) is None
        unattached = _ctx(_request())
        assert feature.wrap(unattached.request, unattached, _model) is None  # type: ignore[arg-type]

    asyncio.run(main())


def test_nothing_declared_refuses_every_name() -> None:
    async def main() -> None:
        feature = PlatformTools(ToolsConfig())
        await feature.start()
        try:
            assert feature.tools_for(_ctx(_request())) is None
            with pytest.raises(InvalidRequest, match="no-such-tool. Available: none") as info:
                feature.tools_for(_ctx(_request(platform_tools=["no-such-tool"])))
            assert info.value.code == "unknown_platform_tool"
        finally:
            await feature.close()

    asyncio.run(main())


def test_inspector_redacts_and_blocks() -> None:
    async def inspect(name: str, text: str, ctx: RequestContext) -> str:
        if "666" in text:
            raise ContentBlocked("number of the beast")
        return text.replace("42", "[redacted]")

    async def model(request: ChatRequest) -> AsyncIterator[Event]:
        from tollway.chunks import ToolCallDelta

        results = [m["content"] for m in request.messages if m["role"] == "tool"]
        if not results:
            yield ToolCallDelta(0, '{"expression": "6*7"}', "a", "calculator")
            yield ToolCallDelta(1, '{"expression": "600+66"}', "b", "calculator")
            yield Finish("tool_calls")
            return
        yield TextDelta(" | ".join(results))
        yield Finish("stop")

    async def main() -> list[Event]:
        feature = PlatformTools(ToolsConfig(calculator={}), inspect)
        await feature.start()
        try:
            request = _request(platform_tools=["calculator"])
            ctx = RequestContext(request_id="r", request=request)
            await feature.attach(ctx)
            events = feature.wrap(request, ctx, model)
            assert events is not None
            return [e async for e in events]
        finally:
            await feature.close()

    events = asyncio.run(main())
    records = [e for e in events if isinstance(e, PlatformToolRecord)]
    assert records[0].result == "[redacted]"
    assert records[1].error == "the result was blocked: number of the beast"
    assert isinstance(events[-2], Finish)
    final = [e.text for e in events if isinstance(e, TextDelta)][-1]
    assert final == "[redacted] | Error: the result was blocked: number of the beast"
