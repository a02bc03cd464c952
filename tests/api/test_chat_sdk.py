"""The official openai SDK against tollway's simulated models, streaming and not."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support.schemas import validate


@pytest.fixture()
def client(sim_gateway: str) -> OpenAI:
    return OpenAI(base_url=sim_gateway + "/v1", api_key="unused", max_retries=0)


MESSAGES = [{"role": "user", "content": "Hello tollway"}]


def test_non_streaming_answer_and_usage(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="sim-echo", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content.endswith("You said: Hello tollway")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "echo"  # the model that served it
    assert completion.usage and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-request-id"]
    assert raw.headers["x-tollway-served-by"] == "sim/echo"
    validate(json.loads(raw.content), "CreateChatCompletionResponse")


def test_streaming_text_role_first_and_usage_on_finish(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="sim-echo", messages=MESSAGES, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.endswith("You said: Hello tollway")
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_include_usage_is_exactly_openai(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="sim-echo", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True},
    ))
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_strict_usage_setting_keeps_finish_chunk_clean() -> None:
    from tests.conftest import sim_config
    from tests.support.servers import run_tollway

    with run_tollway(sim_config(server={"usage_on_final_chunk": False})) as url:
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(model="sim-echo", messages=MESSAGES,
                                                     stream=True))
    assert all(c.usage is None for c in chunks)


def test_reasoning_content_streamed_and_collected(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="sim-reasoner", messages=MESSAGES,
                                                 stream=True))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                        for c in chunks if c.choices)
    assert reasoning.startswith("Let me think")
    completion = client.chat.completions.create(model="sim-reasoner", messages=MESSAGES)
    assert completion.choices[0].message.reasoning_content.startswith("Let me think")  # type: ignore[attr-defined]
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0  # type: ignore[union-attr]


TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}}]


def test_tool_calls_streaming_and_not(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="sim-tool", messages=MESSAGES, tools=TOOLS)
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]

    chunks = list(client.chat.completions.create(model="sim-tool", messages=MESSAGES, tools=TOOLS,
                                                 stream=True))
    fragments = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert fragments[0].id and fragments[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert all(f.id is None and f.function.name is None for f in fragments[1:])  # type: ignore[union-attr]
    args = "".join(f.function.arguments or "" for f in fragments)  # type: ignore[union-attr]
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_refusal_and_length(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="sim-refusal", messages=MESSAGES)
    assert completion.choices[0].message.refusal.startswith("I'm sorry")  # type: ignore[union-attr]
    assert completion.choices[0].message.content is None
    completion = client.chat.completions.create(model="sim-length", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "length"
    completion = client.chat.completions.create(model="sim-lorem", messages=MESSAGES, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"


def test_mid_stream_error_raises_api_error(client: OpenAI) -> None:
    stream = client.chat.completions.create(model="sim-error-mid", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert received, "content before the error reaches the client"
    assert "mid-stream" in info.value.message


def test_error_before_first_token_is_an_http_error(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="sim-error-first", messages=MESSAGES, stream=True)
    assert info.value.status_code == 503


def test_usage_is_estimated_when_upstream_reports_none(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="sim-no-usage", messages=MESSAGES)
    usage = json.loads(raw.content)["usage"]
    assert usage["estimated"] is True and usage["completion_tokens"] > 0
    assert usage["prompt_tokens"] > 0


def test_client_request_id_is_kept(sim_gateway: str) -> None:
    r = httpx.post(sim_gateway + "/v1/chat/completions", headers={"X-Request-Id": "my-id-123"},
                   json={"model": "sim-echo", "messages": MESSAGES})
    assert r.headers["x-request-id"] == "my-id-123"
    client = OpenAI(base_url=sim_gateway + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="sim-echo", messages=MESSAGES)
    assert raw.request_id == raw.headers["x-request-id"]


def test_sse_framing_is_exact(sim_gateway: str) -> None:
    with httpx.stream("POST", sim_gateway + "/v1/chat/completions",
                      json={"model": "sim-tool", "messages": MESSAGES, "tools": TOOLS,
                            "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-request-id"]
        body = r.read()
    events = body.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    for event in events[:-2]:
        assert event.startswith(b"data: ") and b"\n" not in event
        validate(json.loads(event[6:]), "CreateChatCompletionStreamResponse")


@pytest.mark.parametrize(("payload", "status", "param"), [
    (b"{not json", 400, None),
    (b'{"model": "sim-echo"}', 400, "messages"),
    (b'{"model": "sim-echo", "messages": [{"role": "user"}]}', 400, "messages.[0].content"),
    (b'{"model": "sim-echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
     400, "stream"),
    (b'{"model": "sim-echo", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
     400, "temperature"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
])
def test_bad_input_gets_openai_errors(sim_gateway: str, payload: bytes, status: int,
                                      param: str | None) -> None:
    r = httpx.post(sim_gateway + "/v1/chat/completions", content=payload,
                   headers={"content-type": "application/json"})
    assert r.status_code == status
    body = r.json()
    validate(body, "ErrorResponse")
    assert body["error"]["param"] == param
    assert "Traceback" not in r.text


def test_sdk_raises_typed_errors(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sim-echo", messages=[])
    assert info.value.param == "messages"  # type: ignore[attr-defined]


def test_body_over_limit_is_413() -> None:
    from tests.conftest import sim_config
    from tests.support.servers import run_tollway

    with run_tollway(sim_config(server={"max_body_bytes": 1000})) as url:
        r = httpx.post(url + "/v1/chat/completions", json={
            "model": "sim-echo", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_models_and_health(sim_gateway: str, client: OpenAI) -> None:
    assert httpx.get(sim_gateway + "/health").json() == {"status": "ok"}
    ids = {m.id for m in client.models.list()}
    assert {"sim-echo", "sim-tool"} <= ids
    assert client.models.retrieve("sim-echo").id == "sim-echo"
