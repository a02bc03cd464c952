"""``POST /v1/responses`` translated onto chat deployments, through a real tollway, with the
official openai SDK (``responses.create``, ``responses.stream``) as the client: the
simulated provider, and a local upstream replaying recorded chat-completions streams."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import sim_config
from tests.support.servers import Upstream, run_tollway, send_sse

STREAMS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "streams"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with run_tollway(sim_config()) as base:
        yield base


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def test_create_text_with_instructions_and_usage(url: str) -> None:
    r = client(url).responses.create(model="sim-echo", instructions="Be brief.",
                                     input="hello responses")  # fmt: skip
    assert r.status == "completed" and r.object == "response"
    assert r.output_text.endswith("You said: hello responses")
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_stream_events_in_order_with_increasing_sequence_numbers(url: str) -> None:
    with client(url).responses.stream(model="sim-lorem", input="go") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(seqs)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and final.output_text == text
    assert final.usage is not None and final.usage.output_tokens > 0


def test_reasoning_becomes_a_summary_item(url: str) -> None:
    with client(url).responses.stream(model="sim-reasoner", input="think") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in kinds
    assert [o.type for o in final.output] == ["reasoning", "message"]


def test_function_call_round_trip_by_resending_items(url: str) -> None:
    tools: Any = [{"type": "function", "name": "weather", "description": "w",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    c = client(url)
    first = c.responses.create(model="sim-tool", input="weather in Paris?", tools=tools)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    second = c.responses.create(model="sim-tool", tools=tools, input=[
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "weather",
         "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
    ])  # fmt: skip
    assert second.status == "completed" and second.output_text


def test_stream_function_call_arguments_events(url: str) -> None:
    tools: Any = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    with client(url).responses.stream(model="sim-tool", input="x", tools=tools) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert final.output[0].type == "function_call"


def test_max_output_tokens_gives_incomplete(url: str) -> None:
    r = client(url).responses.create(model="sim-lorem", input="x", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"


def test_builtin_tools_400_naming_them(url: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(url).responses.create(model="sim-echo", input="x", tools=[
            {"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": ["v"]}])
    body: Any = err.value.body
    assert "web_search_preview" in body["message"] and "file_search" in body["message"]
    assert body["param"] == "tools"


def test_errors_before_first_event_are_http_errors_and_midstream_is_failed(url: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client(url).responses.create(model="nope", input="x")
    r = httpx.post(url + "/v1/responses", json={"model": "sim-error-mid", "input": "x",
                                                "stream": True})  # fmt: skip
    assert r.status_code == 200
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"]


def test_json_schema_format_reaches_the_upstream_as_response_format() -> None:
    recorded = (STREAMS / "openai" / "openai-python-json-schema-content.sse").read_bytes()

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        return await send_sse(request, recorded, upstream)

    with Upstream(handler) as up, run_tollway({
        "providers": {"up": {"type": "openai", "base_url": up.base_url}},
        "models": {"m": {"deployments": [{"provider": "up", "model": "gpt-4o"}]}},
    }) as base:  # fmt: skip
        schema = {"type": "object", "properties": {"a": {"type": "string"}}}
        with client(base).responses.stream(model="m", input="x", text={"format": {
                "type": "json_schema", "name": "s", "schema": schema, "strict": True}}) as s:
            final = s.get_final_response()
        sent = up.requests[0]
        assert sent["response_format"] == {"type": "json_schema", "json_schema": {
            "name": "s", "schema": schema, "strict": True}}
        assert sent["messages"] == [{"role": "user", "content": "x"}]
        assert final.output_text and final.status == "completed"
        assert final.usage is not None and final.usage.input_tokens > 0


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
        ["model", "input", "instructions", "tools", "tool_choice", "text", "reasoning",
         "max_output_tokens", "type", "role", "content", "call_id", "name", "output",
         "format", "stream", "store", "previous_response_id", "firewall"]), c, max_size=6),
    max_leaves=12,
))
def test_fuzz_no_5xx(body: Any, url: str) -> None:
    if isinstance(body, dict) and "model" in body:
        body["model"] = "sim-echo"
    r = httpx.post(url + "/v1/responses", json=body)
    assert r.status_code < 500, (body, r.text)


def test_firewall_redacts_request_and_response_and_blocks(url: str) -> None:
    c = client(url)
    r = c.responses.create(model="sim-echo", input="mail bob@example.com please",
                           extra_body={"firewall": "redact-pii"})  # fmt: skip
    assert "bob@example.com" not in r.output_text and "[REDACTED:email]" in r.output_text
    whole = httpx.post(url + "/v1/responses", json={"model": "sim-echo", "input": "bob@x.org",
                                                    "firewall": "redact-pii"}).json()
    assert whole["firewall"]  # the verdicts, as on a whole chat completion
    with c.responses.stream(model="sim-echo", input="mail bob@example.com please",
                            extra_body={"firewall": "redact-pii"}) as s:  # fmt: skip
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    assert "bob@example.com" not in text and "[REDACTED:email]" in text
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="sim-echo", input="key sk-proj-" + "a1B2" * 12,
                           extra_body={"firewall": "strict-block"})  # fmt: skip
    assert err.value.body["code"] == "content_filter"  # type: ignore[index]


@pytest.mark.parametrize("recording", ["docs-tool-use.sse", "docs-extended-thinking.sse"])
def test_translated_onto_an_anthropic_deployment(recording: str) -> None:
    raw = (STREAMS / "anthropic" / recording).read_bytes()

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        return web.Response(body=raw, content_type="text/event-stream")

    with Upstream(handler) as up, run_tollway({
        "providers": {"a": {"type": "anthropic", "api_key": "sk-ant",
                            "base_url": up.base_url.removesuffix("/v1")}},
        "models": {"claude": {"deployments": [{"provider": "a", "model": "claude-x"}]}},
    }) as base:  # fmt: skip
        tools: Any = [{"type": "function", "name": "get_weather",
                       "parameters": {"type": "object", "properties": {
                           "location": {"type": "string"}}}}]  # fmt: skip
        with client(base).responses.stream(model="claude", input="weather?", tools=tools,
                                           instructions="be brief",
                                           max_output_tokens=2000) as s:  # fmt: skip
            seqs = [e.sequence_number for e in s]
            final = s.get_final_response()
        sent = up.requests[0]
        assert sent["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
        assert sent["tools"][0]["name"] == "get_weather" and sent["max_tokens"] == 2000
        assert seqs == list(range(len(seqs))) and final.status in ("completed", "incomplete")
        assert final.usage is not None and final.usage.input_tokens > 0
        kinds = [o.type for o in final.output]
        if "tool-use" in recording:
            assert "function_call" in kinds
        else:
            assert kinds[0] == "reasoning" and final.output_text
