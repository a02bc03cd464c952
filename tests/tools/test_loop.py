"""The tool loop, driven by a scripted model written as a plain async generator."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tollway.chunks import (
    Event,
    Finish,
    PlatformToolRecord,
    Start,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tollway.context import RequestContext
from tollway.errors import InvalidRequest
from tollway.providers.base import ChatRequest
from tollway.tools.calculator import CalculatorSource
from tollway.tools.config import CalculatorConfig, FormatConfig, ToolsConfig
from tollway.tools.loop import run_with_tools
from tollway.tools.registry import Tool, ToolError

Round = Callable[[ChatRequest], list[Event]]


def make_request(tools: list[dict[str, Any]] | None = None, **body: Any) -> ChatRequest:
    messages = [{"role": "user", "content": "What is 6 times 7?"}]
    return ChatRequest(body={"model": "m", "messages": messages, **body}, model="m", stream=True,
                       include_usage=True, messages=messages, tools=tools)


class ScriptedModel:
    """Answers each upstream round from a list of functions of the request."""

    def __init__(self, *rounds: Round) -> None:
        self.rounds = list(rounds)
        self.requests: list[list[dict[str, Any]]] = []
        self.tools_seen: list[list[str]] = []

    async def __call__(self, request: ChatRequest) -> AsyncIterator[Event]:
        self.requests.append([dict(m) for m in request.messages])
        self.tools_seen.append([t["function"]["name"] for t in request.tools or []])
        script = self.rounds[min(len(self.requests), len(self.rounds)) - 1]
        yield Start(model="scripted")
        for event in script(request):
            await asyncio.sleep(0)
            yield event


def call(index: int, name: str, arguments: dict[str, Any] | str, call_id: str | None = None
         ) -> list[Event]:
    """A tool call split in fragments the way upstreams stream it."""
    raw = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    half = len(raw) // 2
    return [ToolCallDelta(index, raw[:half], call_id or f"call_{index}", name),
            ToolCallDelta(index, raw[half:])]


def tool_results(request: ChatRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "tool"]


async def calculator() -> Tool:
    [tool] = await CalculatorSource(CalculatorConfig(price_usd=Decimal("0.002")), 5).start()
    return tool


def slow_tool(name: str, seconds: float, result: Any = "done", timeout: float = 5) -> Tool:
    async def run(arguments: dict[str, Any]) -> Any:
        await asyncio.sleep(seconds)
        return result

    return Tool(name=name, description="sleeps", parameters={"type": "object"}, call=run,
                timeout=timeout)


def failing_tool() -> Tool:
    async def run(arguments: dict[str, Any]) -> Any:
        raise ToolError("the index is offline")

    return Tool(name="docs.search", description="search", parameters={"type": "object"}, call=run)


def crashing_tool() -> Tool:
    async def run(arguments: dict[str, Any]) -> Any:
        return 1 / 0

    return Tool(name="crash", description="crashes", parameters={"type": "object"}, call=run)


def collect(request: ChatRequest, tools: list[Tool], model: ScriptedModel,
            config: ToolsConfig | None = None) -> tuple[list[Event], RequestContext]:
    ctx = RequestContext(request_id="req_test", request=request)

    async def main() -> list[Event]:
        return [e async for e in run_with_tools(request, tools, model, ctx,
                                                config or ToolsConfig())]

    return asyncio.run(main()), ctx


def texts(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def of(kind: type, events: list[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_one_platform_call() -> None:
    model = ScriptedModel(
        lambda r: [TextDelta("Let me compute. "), *call(0, "calculator", {"expression": "6*7"}),
                   Finish("tool_calls"), Usage(prompt_tokens=10, completion_tokens=5)],
        lambda r: [TextDelta(f"It is {tool_results(r)[0]}."), Finish("stop"),
                   Usage(prompt_tokens=30, completion_tokens=4)],
    )
    request = make_request()
    tool = asyncio.run(calculator())
    events, ctx = collect(request, [tool], model)

    assert not of(ToolCallDelta, events), "platform calls are not forwarded"
    assert len(of(Start, events)) == 1
    assert texts(events) == "Let me compute. \n\n> calculator: 42\n\nIt is 42."
    [record] = of(PlatformToolRecord, events)
    assert (record.name, record.arguments, record.result, record.error) == (
        "calculator", '{"expression":"6*7"}', 42, None)
    assert of(Finish, events) == [Finish("stop")]
    assert events[-1] == Usage(prompt_tokens=40, completion_tokens=9)
    assert [type(e) for e in events[-2:]] == [Finish, Usage]
    # the record comes before the final answer
    assert events.index(record) < max(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    # upstream saw the platform schema beside no client tool, then the conversation grew
    assert model.tools_seen[0] == ["calculator"]
    assistant, result = model.requests[1][1:]
    assert assistant == {"role": "assistant", "content": "Let me compute. ", "tool_calls": [
        {"id": "call_0", "type": "function",
         "function": {"name": "calculator", "arguments": '{"expression":"6*7"}'}}]}
    assert result == {"role": "tool", "tool_call_id": "call_0", "content": "42"}
    [trace] = ctx.tool_calls
    assert trace["name"] == "calculator" and trace["outcome"] == "ok" and trace["round"] == 1
    assert trace["arguments_sha256"] == hashlib.sha256(b'{"expression":"6*7"}').hexdigest()
    assert trace["duration_ms"] >= 0
    assert ctx.extra_usage_cost == Decimal("0.002")


def test_parallel_calls_run_concurrently() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "a", {}), *call(1, "b", {}), Finish("tool_calls"), Usage()],
        lambda r: [TextDelta(" & ".join(tool_results(r))), Finish("stop"), Usage()],
    )
    spans: dict[str, tuple[float, float]] = {}

    def timed(name: str) -> Tool:
        async def run(arguments: dict[str, Any]) -> Any:
            begin = time.perf_counter()
            await asyncio.sleep(0.2)
            spans[name] = (begin, time.perf_counter())
            return name.upper()

        return Tool(name=name, description="sleeps", parameters={"type": "object"}, call=run)

    config = ToolsConfig(format=FormatConfig(enabled=False))
    events, ctx = collect(make_request(), [timed("a"), timed("b")], model, config)
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1], "they overlap"
    assert [r.name for r in of(PlatformToolRecord, events)] == ["a", "b"]
    assert texts(events) == "A & B"
    assert [m["tool_call_id"] for m in model.requests[1] if m["role"] == "tool"] == [
        "call_0", "call_1"]
    assert len(ctx.tool_calls) == 2


def test_several_rounds_sum_usage() -> None:
    def ask(expression: str) -> Round:
        return lambda r: [*call(0, "calculator", {"expression": expression}, f"c_{expression}"),
                          Finish("tool_calls"), Usage(prompt_tokens=10, completion_tokens=2),
                          Usage(prompt_tokens=10, completion_tokens=3, extra={
                              "completion_tokens_details": {"audio_tokens": 1}})]

    model = ScriptedModel(ask("1+1"), ask("2*3"), ask("10-4"),
                          lambda r: [TextDelta(",".join(tool_results(r))), Finish("stop"),
                                     Usage(prompt_tokens=50, completion_tokens=5)])
    events, ctx = collect(make_request(), [asyncio.run(calculator())], model)
    assert [r.result for r in of(PlatformToolRecord, events)] == [2, 6, 6]
    assert texts(events).endswith("2,6,6")
    assert len(model.requests) == 4 and len(model.requests[3]) == 7
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert (usage.prompt_tokens, usage.completion_tokens) == (80, 14)
    assert usage.extra == {"completion_tokens_details": {"audio_tokens": 3}}
    assert [t["round"] for t in ctx.tool_calls] == [1, 2, 3]
    assert ctx.extra_usage_cost == Decimal("0.006")


def test_mixed_turn_returns_client_call() -> None:
    client_tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "2+2"}),
                   *call(1, "get_weather", {"city": "Paris"}, "call_w"),
                   Finish("tool_calls"), Usage(prompt_tokens=10, completion_tokens=7)],
    )
    request = make_request(tools=client_tools)
    events, _ = collect(request, [asyncio.run(calculator())], model)
    assert len(model.requests) == 1, "the model is not called again"
    assert model.tools_seen[0] == ["get_weather", "calculator"]
    deltas = of(ToolCallDelta, events)
    assert deltas[0] == ToolCallDelta(0, '{"city":', "call_w", "get_weather")
    assert "".join(d.arguments for d in deltas) == '{"city":"Paris"}'
    assert all(d.index == 0 for d in deltas), "client calls are renumbered from 0"
    assert [r.result for r in of(PlatformToolRecord, events)] == [4]
    assert of(Finish, events) == [Finish("tool_calls")]
    assert events[-1] == Usage(prompt_tokens=10, completion_tokens=7)


def test_client_only_round_passes_through_unchanged() -> None:
    client_tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    script = [TextDelta("Checking."), *call(0, "get_weather", {"city": "Oslo"}),
              Finish("tool_calls"), Usage(prompt_tokens=3, completion_tokens=4)]
    model = ScriptedModel(lambda r: script)
    events, ctx = collect(make_request(tools=client_tools), [asyncio.run(calculator())], model)
    assert events == [Start(model="scripted"), *script]
    assert ctx.tool_calls == []


def test_name_in_a_later_fragment_is_buffered() -> None:
    client_tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    model = ScriptedModel(lambda r: [
        ToolCallDelta(0, "", "call_x"), ToolCallDelta(0, '{"q":', None, "lookup"),
        ToolCallDelta(0, '"x"}'), ToolCallDelta(1, '{"a":1}', "call_y"), Finish("tool_calls")])
    events, _ = collect(make_request(tools=client_tools), [asyncio.run(calculator())], model)
    assert of(ToolCallDelta, events) == [
        ToolCallDelta(0, '{"q":', "call_x", "lookup"), ToolCallDelta(0, '"x"}'),
        ToolCallDelta(1, '{"a":1}', "call_y", "")]


@pytest.mark.parametrize(
    ("tool", "arguments", "status", "message"),
    [
        (failing_tool(), "{}", "error", "Error: the index is offline"),
        (crashing_tool(), "{}", "error", "Error: the tool failed unexpectedly (ZeroDivisionError)"),
        (slow_tool("slow", 5, timeout=0.1), "{}", "timeout",
         "Error: the tool did not answer within 0.1s"),
        (slow_tool("slow", 0), '{"broken', "invalid_arguments", "Error: the arguments are not"),
        (slow_tool("slow", 0), "[1, 2]", "invalid_arguments",
         "Error: the arguments must be a JSON object"),
    ],
)
def test_failures_reach_the_model(tool: Tool, arguments: str, status: str, message: str) -> None:
    model = ScriptedModel(
        lambda r: [*call(0, tool.function_name, arguments), Finish("tool_calls")],
        lambda r: [TextDelta(f"Sorry: {tool_results(r)[0]}"), Finish("stop")],
    )
    events, ctx = collect(make_request(), [tool], model)
    assert tool_results_of(model)[0].startswith(message)
    [record] = of(PlatformToolRecord, events)
    assert record.error is not None and record.result is None
    assert f"> {tool.name} failed: " in texts(events)
    assert texts(events).endswith(tool_results_of(model)[0])
    assert of(Finish, events) == [Finish("stop")]
    assert not of(StreamError, events)
    assert ctx.tool_calls[0]["outcome"] == status
    assert ctx.extra_usage_cost is None, "failed calls are not charged"


def tool_results_of(model: ScriptedModel) -> list[str]:
    return [m["content"] for m in model.requests[-1] if m["role"] == "tool"]


def test_round_limit_ends_with_length() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "1+1"}), Finish("tool_calls"),
                   Usage(prompt_tokens=5, completion_tokens=1)])
    config = ToolsConfig(max_rounds=2)
    events, ctx = collect(make_request(), [asyncio.run(calculator())], model, config)
    assert len(model.requests) == 3
    assert len(of(PlatformToolRecord, events)) == 2
    assert "stopped after 2 round(s) of platform tool calls" in texts(events)
    assert of(Finish, events) == [Finish("length")]
    assert events[-1] == Usage(prompt_tokens=15, completion_tokens=3)
    assert len(ctx.tool_calls) == 2


def test_format_off_gives_records_only() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "3*3"}), Finish("tool_calls")],
        lambda r: [TextDelta("nine"), Finish("stop")],
    )
    config = ToolsConfig(format=FormatConfig(enabled=False))
    events, _ = collect(make_request(), [asyncio.run(calculator())], model, config)
    assert texts(events) == "nine"
    assert [r.result for r in of(PlatformToolRecord, events)] == [9]


def test_custom_format() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "3*3"}), Finish("tool_calls")],
        lambda r: [Finish("stop")],
    )
    config = ToolsConfig(format=FormatConfig(result="[{name} {arguments} = {result}]"))
    events, _ = collect(make_request(), [asyncio.run(calculator())], model, config)
    assert texts(events) == '[calculator {"expression":"3*3"} = 9]'


def test_missing_usage_is_estimated_per_round() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "3*3"}), Finish("tool_calls")],
        lambda r: [TextDelta("nine"), Finish("stop"), Usage(prompt_tokens=40, completion_tokens=1)],
    )
    events, _ = collect(make_request(), [asyncio.run(calculator())], model)
    usage = events[-1]
    assert isinstance(usage, Usage) and usage.estimated
    assert usage.prompt_tokens > 40 and usage.completion_tokens > 1


def test_upstream_error_in_a_later_round_ends_cleanly() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "3*3"}), Finish("tool_calls"),
                   Usage(prompt_tokens=5, completion_tokens=2)],
        lambda r: [TextDelta("ni"), StreamError(502, "upstream died")],
    )
    events, _ = collect(make_request(), [asyncio.run(calculator())], model)
    assert events[-1] == StreamError(502, "upstream died")
    assert events[-2] == Usage(prompt_tokens=5, completion_tokens=2)


def test_router_failure_in_a_later_round_becomes_a_stream_error() -> None:
    from tollway.errors import UpstreamUnavailable

    calls = 0

    async def model(request: ChatRequest) -> AsyncIterator[Event]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise UpstreamUnavailable("no deployment is available")
        for event in call(0, "calculator", {"expression": "1"}):
            yield event

    request = make_request()
    ctx = RequestContext(request_id="r", request=request)

    async def main() -> list[Event]:
        tools = [await calculator()]
        return [e async for e in run_with_tools(request, tools, model, ctx, ToolsConfig())]

    events = asyncio.run(main())
    assert isinstance(events[-1], StreamError) and events[-1].status == 503
    assert len(of(PlatformToolRecord, events)) == 1


def test_clash_and_n_are_refused() -> None:
    tool = asyncio.run(calculator())
    clash = [{"type": "function", "function": {"name": "calculator", "parameters": {}}}]
    with pytest.raises(InvalidRequest, match="same name as platform tools"):
        collect(make_request(tools=clash), [tool], ScriptedModel(lambda r: []))
    with pytest.raises(InvalidRequest, match="n > 1"):
        collect(make_request(n=2), [tool], ScriptedModel(lambda r: []))


def test_required_tool_choice_is_relaxed_after_a_round() -> None:
    model = ScriptedModel(
        lambda r: [*call(0, "calculator", {"expression": "1"}), Finish("tool_calls")],
        lambda r: [TextDelta(str(r.body["tool_choice"])), Finish("stop")],
    )
    events, _ = collect(make_request(tool_choice="required"), [asyncio.run(calculator())], model)
    assert texts(events).endswith("auto")
