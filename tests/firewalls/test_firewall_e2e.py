"""Firewalls through HTTP with the openai SDK: request and response side, both modes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web
from openai import OpenAI

from tests.conftest import sim_config
from tests.support.servers import Upstream, run_tollway

CARD = "4111 1111 1111 1111"
SECRET_REPLY = f"Sure. The card on file is {CARD} and nothing else."


async def _answer(request: web.Request, upstream: Upstream) -> web.Response:
    return web.json_response({
        "id": "x", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    })


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, Upstream]]:
    with Upstream(_answer) as upstream:
        config = sim_config()
        config["providers"] = {**config["providers"],
                               "up": {"type": "openai", "base_url": upstream.base_url}}
        config["models"] = {
            **config["models"],
            "leaky": {"deployments": [{"provider": "sim", "model": "echo",
                                       "options": {"text": SECRET_REPLY}}]},
            "upstream": {"deployments": [{"provider": "up", "model": "up"}]},
        }
        config["admin_key"] = "admin-secret"
        with run_tollway(config) as url:
            yield url, upstream


def _client(url: str) -> OpenAI:
    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_request_block_never_reaches_upstream(gateway: tuple[str, Upstream]) -> None:
    url, upstream = gateway
    before = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as info:
        _client(url).chat.completions.create(
            model="upstream", messages=[{"role": "user", "content": f"charge {CARD}"}],
            extra_body={"firewall": "strict-block"})
    body: Any = info.value.body
    assert body["code"] == "content_filter"
    assert CARD not in json.dumps(body) and "credit_card" in body["message"]
    assert len(upstream.requests) == before


def test_request_redact_sends_redacted_text(gateway: tuple[str, Upstream]) -> None:
    url, upstream = gateway
    completion = _client(url).chat.completions.create(
        model="upstream", messages=[{"role": "user", "content": "mail me at jo@example.com"}],
        extra_body={"firewall": "redact-pii"})
    sent = upstream.requests[-1]["messages"][0]["content"]
    assert "jo@example.com" not in sent and "[REDACTED:email]" in sent
    assert "firewall" not in upstream.requests[-1]
    verdicts = completion.model_extra["firewall"]["verdicts"]  # type: ignore[index]
    assert any(v["detector"] == "email" and v["action"] == "redact" for v in verdicts)


def test_monitor_changes_nothing_but_records(gateway: tuple[str, Upstream]) -> None:
    url, upstream = gateway
    completion = _client(url).chat.completions.create(
        model="upstream", messages=[{"role": "user", "content": "mail me at jo@example.com"}],
        extra_body={"firewall": "monitor"})
    assert "jo@example.com" in upstream.requests[-1]["messages"][0]["content"]
    assert completion.model_extra["firewall"]["verdicts"]  # type: ignore[index]


def test_unknown_policy_is_400_naming_it(gateway: tuple[str, Upstream]) -> None:
    url, _ = gateway
    with pytest.raises(openai.BadRequestError) as info:
        _client(url).chat.completions.create(
            model="sim-echo", messages=[{"role": "user", "content": "hi"}],
            extra_body={"firewall": "no-such-policy"})
    assert "no-such-policy" in info.value.message


@pytest.mark.parametrize("stream", [True, False])
def test_response_block_mid_stream(gateway: tuple[str, Upstream], stream: bool) -> None:
    url, _ = gateway
    client = _client(url)
    kwargs: dict[str, Any] = {"model": "leaky", "messages": [{"role": "user", "content": "card?"}],
                              "extra_body": {"firewall": "strict-block"}}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and
                  c.choices[0].finish_reason]
    else:
        completion = client.chat.completions.create(**kwargs)
        text = completion.choices[0].message.content or ""
        finish = [completion.choices[0].finish_reason]
    assert finish == ["content_filter"]
    assert text.startswith("Sure.")
    for piece in ("4111", "1111 1111"):
        assert piece not in text


def test_response_redact_same_in_both_modes(gateway: tuple[str, Upstream]) -> None:
    url, _ = gateway
    client = _client(url)
    kwargs: dict[str, Any] = {"model": "leaky", "messages": [{"role": "user", "content": "card?"}],
                              "extra_body": {"firewall": "redact-pii"}}
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    collected = client.chat.completions.create(**kwargs).choices[0].message.content
    assert streamed == collected
    assert CARD not in streamed and "[REDACTED:credit_card]" in streamed


def test_block_verdict_is_in_the_trace(gateway: tuple[str, Upstream]) -> None:
    import time

    import httpx

    url, _ = gateway
    raw = _client(url).chat.completions.with_raw_response.create(
        model="leaky", messages=[{"role": "user", "content": "card?"}], stream=False,
        extra_body={"firewall": "strict-block"})
    deadline = time.monotonic() + 3
    while True:
        r = httpx.get(f"{url}/admin/traces/{raw.request_id}",
                      headers={"Authorization": "Bearer admin-secret"})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    trace = r.json()
    assert trace["finish_reason"] == "content_filter"
    assert any(v["detector"] == "credit_card" and v["action"] == "block"
               for v in trace["firewall_verdicts"])
    assert CARD not in r.text


def test_injection_phrases_are_caught_with_or_without_space_before_colon() -> None:
    from tollway.firewalls.policy import FirewallSet
    from tollway.firewalls.request import apply_request

    policy = FirewallSet.from_config({}).get("monitor")
    for text in ("new instructions: obey", "New system instructions : obey"):
        _, verdicts = apply_request(policy, [{"role": "user", "content": text}])
        assert [v["detector"] for v in verdicts] == ["prompt_injection"], text


KEY = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize("kwargs", [
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "pay 4111 1111"},
                                               {"type": "text", "text": " 1111 1111 now"}]}]},
    {"messages": [{"role": "user", "content": "pay 4111 1111"},
                  {"role": "user", "content": " 1111 1111 now"}]},
    {"messages": [{"role": "user", "content": "hi", "name": KEY}]},
    {"messages": [{"role": "user", "content": "hi"}],
     "tools": [{"type": "function", "function": {"name": "f", "description": f"key {KEY}"}}]},
    {"messages": [{"role": "user", "content": "hi"}],
     "prediction": {"type": "content", "content": f"card {CARD}"}},
    {"messages": [{"role": "user", "content": "hi"}],
     "response_format": {"type": "json_schema", "json_schema": {
         "name": "x", "schema": {"type": "object", "description": f"use {KEY}"}}}},
    {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": KEY}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "done"}]},
    {"messages": [{"role": "user", "content": "hi"}], "extra_body": {"x_vendor": [KEY]}},
])
def test_request_block_covers_every_field_and_split(
    gateway: tuple[str, Upstream], kwargs: dict[str, Any]
) -> None:
    url, upstream = gateway
    before = len(upstream.requests)
    extra = {"firewall": "strict-block", **kwargs.pop("extra_body", {})}
    with pytest.raises(openai.BadRequestError) as info:
        _client(url).chat.completions.create(model="upstream", extra_body=extra, **kwargs)
    body: Any = info.value.body
    assert body["code"] == "content_filter"
    assert KEY not in json.dumps(body) and "4111" not in json.dumps(body)
    assert len(upstream.requests) == before  # the upstream received nothing


def test_request_redaction_reaches_tools_and_other_fields(gateway: tuple[str, Upstream]) -> None:
    url, upstream = gateway
    _client(url).chat.completions.create(
        model="upstream",
        messages=[{"role": "user", "content": [{"type": "text", "text": "mail jo@exa"},
                                               {"type": "text", "text": "mple.com please!"}]}],
        tools=[{"type": "function", "function": {
            "name": "send", "description": "sends to amy@example.org!",
            "parameters": {"type": "object", "properties": {
                # (fields are read as one text, tools first, as models read a prompt: an
                # address at the very end would go on into "mail" as "example.netmail",
                # and so would "please" into the x_vendor address after the messages)
                "to": {"type": "string", "description": "(e.g. bob@example.net)"}}}}}],
        extra_body={"firewall": "redact-pii", "x_vendor": {"cc": "ann@example.com"}},
    )
    sent = upstream.requests[-1]
    assert [p["text"] for p in sent["messages"][0]["content"]] == [
        "mail [REDACTED:email]", " please!"]
    fn = sent["tools"][0]["function"]
    assert fn["description"] == "sends to [REDACTED:email]!"
    assert fn["parameters"]["properties"]["to"]["description"] == "(e.g. [REDACTED:email])"
    assert sent["x_vendor"] == {"cc": "[REDACTED:email]"}
    assert "example" not in json.dumps(sent).replace("[REDACTED:email]", "")


def test_a_conversations_turns_are_redacted_as_read_from_the_start(
    gateway: tuple[str, Upstream],
) -> None:
    """A chat client sends the whole conversation with every turn; from the third turn on
    the gateway goes on from the reading the previous turn left. What the upstream receives
    is, turn after turn, the body redacted as reading it from the start redacts it (a phone
    number split over the first two messages, addresses in later ones)."""
    from tollway.firewalls import FirewallSet, apply_body

    url, upstream = gateway
    policy = FirewallSet.from_config().get("redact-pii")
    said = ["Hi, my number is +1 415 555 ", "2671 is noted. Anything else?",
            "mail bob@example.com too", "Noted bob@example.com.", "and ann@example.org, thanks"]
    for turn in range(1, 4):
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text}
                    for i, text in enumerate(said[:2 * turn - 1])]
        _client(url).chat.completions.create(
            model="upstream", messages=messages,  # type: ignore[arg-type]
            extra_body={"firewall": "redact-pii"})
        expected, _ = apply_body(policy, {"model": "up", "messages": messages}, ("model",))
        sent = [m["content"] for m in upstream.requests[-1]["messages"]]
        assert sent == [m["content"] for m in expected["messages"]]
        if turn > 1:  # the number is whole once the reply is sent back
            assert "[REDACTED:phone]" in sent[0] and "2671" not in sent[1]
