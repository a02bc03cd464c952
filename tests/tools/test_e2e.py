"""Platform tools end to end: openai SDK → tollway (HTTP) → a scripted OpenAI-compatible upstream.

The upstream is an aiohttp server speaking OpenAI's wire format (SSE when asked
to stream, JSON otherwise); its ``model`` name picks a script, and the tool
messages it has received so far pick the step. The MCP server is the real one
in ``mcp_docs_server.py`` over stdio.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.support.servers import Upstream, run_tollway
from tests.tools.test_mcp_client import SERVER

Turn = tuple[str, list[tuple[str, dict[str, Any]]]]  # (text, [(function name, arguments)])


def script(model: str, results: list[str]) -> Turn:
    """What the scripted model says, given the tool results it has seen."""
    if model == "one":
        if not results:
            return "Let me compute. ", [("calculator", {"expression": "6*7"})]
        return f"The answer is {results[-1]}.", []
    if model == "parallel":
        if not results:
            return "", [("calculator", {"expression": "2**10"}), ("clock", {"timezone": "UTC"})]
        return f"Got {len(results)} results.", []
    if model == "rounds":
        if len(results) < 3:
            return "", [("calculator", {"expression": f"{len(results)} + 1"})]
        return "Counted: " + ",".join(results), []
    if model == "mixed":
        return "", [("calculator", {"expression": "1+1"}), ("get_weather", {"city": "Paris"})]
    if model == "failing":
        if not results:
            return "", [("docs__fail", {"reason": "disk on fire"})]
        return f"The tool said: {results[-1]}", []
    if model == "mcp":
        if not results:
            return "", [("docs__search", {"query": "billing"})]
        return f"From the docs: {results[-1]}", []
    if model == "forever":
        return "again ", [("calculator", {"expression": "1"})]
    return "plain answer", []


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
    body: dict[str, Any] = {"id": "up", "object": "chat.completion.chunk", "created": 1,
                            "model": "up-model",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body = {**body, "choices": [], "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def scripted_upstream(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = upstream.requests[-1]
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    text, calls = script(body["model"], results)
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    tool_calls = [{"id": f"call_{len(results)}_{i}", "type": "function",
                   "function": {"name": name, "arguments": json.dumps(args)}}
                  for i, (name, args) in enumerate(calls)]
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return web.json_response({
            "id": "up", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk({"role": "assistant", "content": ""}))
    if text:
        await resp.write(_chunk({"content": text}))
    for i, call in enumerate(tool_calls):
        args = call["function"]["arguments"]
        await resp.write(_chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"],
                                                              "arguments": args[:5]}}]}))
        rest = {"index": i, "function": {"arguments": args[5:]}}
        await resp.write(_chunk({"tool_calls": [rest]}))
    await resp.write(_chunk({}, finish))
    await resp.write(_chunk({}, usage=usage))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


MODELS = ("one", "parallel", "rounds", "mixed", "failing", "mcp", "forever", "plain")


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with Upstream(scripted_upstream) as upstream:
        config = {"providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
                  "models": {m: {"deployments": [{"provider": "up", "model": m}]}
                             for m in MODELS}}
        config["tools"] = {  # wired from the config, as in production
            "calculator": {}, "clock": {}, "max_rounds": 4,
            "mcp_servers": {"docs": {"command": sys.executable, "args": [SERVER]}},
        }
        with run_tollway(config) as url:
            yield openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0)


def ask(client: openai.OpenAI, model: str, stream: bool, platform: list[str],
        **extra: Any) -> dict[str, Any]:
    """One request; returns content, records, tool calls and finish reason either way."""
    kwargs: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}],
                              "extra_body": {"platform_tools": platform}, **extra}
    if not stream:
        response = client.chat.completions.create(**kwargs)
        message = response.choices[0].message
        return {"content": message.content or "",
                "records": (message.model_extra or {}).get("platform_tool_calls", []),
                "tool_calls": [c.model_dump() for c in message.tool_calls or []],
                "finish": response.choices[0].finish_reason,
                "usage": response.usage}
    out: dict[str, Any] = {"content": "", "records": [], "tool_calls": [], "finish": None,
                           "usage": None}
    for chunk in client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs):
        if chunk.usage is not None:
            out["usage"] = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            out["content"] += delta.content or ""
            record = (delta.model_extra or {}).get("platform_tool")
            if record is not None:
                out["records"].append(record)
            for call in delta.tool_calls or []:
                out["tool_calls"].append(call.model_dump())
            out["finish"] = choice.finish_reason or out["finish"]
    return out


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_one_call(client: openai.OpenAI, stream: bool) -> None:
    out = ask(client, "one", stream, ["calculator"])
    assert out["content"] == "Let me compute. \n\n> calculator: 42\n\nThe answer is 42."
    [record] = out["records"]
    assert record["name"] == "calculator" and record["result"] == 42
    assert record["arguments"] == '{"expression": "6*7"}' and record["duration_ms"] >= 0
    assert out["tool_calls"] == [] and out["finish"] == "stop"
    assert out["usage"].prompt_tokens == 20 and out["usage"].completion_tokens == 10


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_parallel_calls(client: openai.OpenAI, stream: bool) -> None:
    out = ask(client, "parallel", stream, ["calculator", "clock"])
    assert [r["name"] for r in out["records"]] == ["calculator", "clock"]
    assert out["records"][0]["result"] == 1024 and out["records"][1]["result"]["timezone"] == "UTC"
    assert out["content"].endswith("Got 2 results.") and out["finish"] == "stop"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_several_rounds(client: openai.OpenAI, stream: bool) -> None:
    out = ask(client, "rounds", stream, ["calculator"])
    assert [r["result"] for r in out["records"]] == [1, 2, 3]
    assert out["content"].endswith("Counted: 1,2,3")
    assert out["usage"].prompt_tokens == 40


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_mixed_client_and_platform_call(client: openai.OpenAI, stream: bool) -> None:
    weather = {"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    out = ask(client, "mixed", stream, ["calculator"], tools=[weather])
    assert [r["result"] for r in out["records"]] == [2]
    assert out["finish"] == "tool_calls"
    names = [c["function"]["name"] for c in out["tool_calls"] if c["function"]["name"]]
    assert names == ["get_weather"]
    arguments = "".join(c["function"]["arguments"] or "" for c in out["tool_calls"])
    assert json.loads(arguments) == {"city": "Paris"}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_mcp_tools_and_a_failing_one(client: openai.OpenAI, stream: bool) -> None:
    out = ask(client, "mcp", stream, ["docs.search"])
    assert out["records"][0]["result"] == "billing: Every request is one ledger entry."
    assert out["content"].endswith("From the docs: billing: Every request is one ledger entry.")
    failed = ask(client, "failing", stream, ["docs.*"])
    [record] = failed["records"]
    assert record["name"] == "docs.fail" and "result" not in record and record["error"]
    assert failed["content"].endswith("The tool said: Error: " + record["error"])
    assert failed["finish"] == "stop"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_round_limit(client: openai.OpenAI, stream: bool) -> None:
    out = ask(client, "forever", stream, ["calculator"])
    assert len(out["records"]) == 4 and out["finish"] == "length"
    assert "stopped after 4 round(s)" in out["content"]


def test_unknown_tool_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "one", True, ["calculator", "nope.search"])
    assert "nope.search" in str(info.value)
    assert info.value.body["code"] == "unknown_platform_tool"  # type: ignore[index]


def test_no_platform_tools_is_untouched(client: openai.OpenAI) -> None:
    out = ask(client, "plain", True, [])
    assert out["content"] == "plain answer" and out["records"] == []
