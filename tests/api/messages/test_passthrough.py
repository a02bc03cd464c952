"""/v1/messages to an Anthropic deployment: what the client sent goes upstream as it is,
and every upstream event comes back as it is (the official anthropic SDK as the client,
a local upstream replaying every recording in shared/conformance)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.messages.support import (
    ANTHROPIC_STREAMS,
    REQUESTS,
    STREAMS,
    anthropic_config,
    recording,
    replay,
    sse_events,
)
from tests.support.servers import Upstream, run_tollway

PRICES = {"input_per_mtok": 3, "cached_input_per_mtok": "0.3", "cache_write_per_mtok": "3.75",
          "cache_write_1h_per_mtok": 6, "output_per_mtok": 15}


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, Upstream]]:
    if not ANTHROPIC_STREAMS.is_dir():
        pytest.skip(f"conformance recordings not found at {ANTHROPIC_STREAMS}")
    firewalls = {"redact-cards": {"detectors": {"credit_card": "redact"}}}
    with Upstream(replay) as upstream, run_tollway(
        anthropic_config(upstream.base_url, firewalls=firewalls)
    ) as url:
        yield url, upstream


def _client(base: str, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key="tw-any", max_retries=0, **kw)


@pytest.mark.parametrize("name", STREAMS)
def test_every_event_is_passed_on_unchanged(gateway: tuple[str, Upstream], name: str) -> None:
    url, _up = gateway
    body = {"model": name.removesuffix(".sse"), "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}
    got = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": "tw-any"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/event-stream")
    assert sse_events(got.content) == sse_events(recording(name))  # unknown events included


@pytest.mark.parametrize("name", STREAMS)
def test_the_sdk_sees_what_it_would_see_from_anthropic(
    gateway: tuple[str, Upstream], name: str
) -> None:
    url, up = gateway
    model = name.removesuffix(".sse")
    args: dict[str, Any] = {"model": model, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Hi"}]}
    direct_base = up.base_url.removesuffix("/v1")
    finals = []
    for base in (direct_base, url):
        try:
            with _client(base).messages.stream(**args) as stream:
                texts = list(stream.text_stream)
                finals.append((texts, stream.get_final_message().model_dump(warnings=False)))
        except AttributeError as exc:  # a recording the SDK itself cannot take (no usage)
            finals.append(type(exc))
    assert finals[0] == finals[1]
    whole = [_client(base).messages.create(**args).model_dump(warnings=False)
             for base in (direct_base, url)]
    assert whole[0] == whole[1]


def test_an_error_before_any_content_is_anthropics_overloaded(
    gateway: tuple[str, Upstream],
) -> None:
    url, _up = gateway
    with pytest.raises(anthropic.APIStatusError) as caught:
        _client(url).messages.create(model="docs-error-overloaded", max_tokens=8, stream=True,
                                     messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_an_upstream_failing_before_content_falls_back(gateway: tuple[str, Upstream]) -> None:
    url, up = gateway
    before = len(up.requests)
    body = {"model": "with-fallback", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}
    got = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": "tw-any"})
    assert got.status_code == 200, got.text
    assert [r["model"] for r in up.requests[before:]] == ["start-then-overloaded", "docs-basic"]
    assert got.headers["x-tollway-fallback-from"] == "with-fallback/anth/start-then-overloaded"
    # nothing of the failed attempt reaches the client: exactly the second upstream's events
    assert sse_events(got.content) == sse_events(recording("docs-basic.sse"))


REQUEST_FILES = sorted(p.name for p in REQUESTS.glob("*.request.json")) if REQUESTS.is_dir() else []


@pytest.mark.parametrize("name", REQUEST_FILES)
def test_recorded_requests_reach_anthropic_as_sent(
    gateway: tuple[str, Upstream], name: str
) -> None:
    url, up = gateway
    sent = json.loads((REQUESTS / name).read_text())
    counting = "count_tokens" in name
    body = {**sent, "model": "counted" if counting else "docs-basic"}
    headers = {"x-api-key": "tw-any", "anthropic-version": "2023-06-01",
               "anthropic-beta": "interleaved-thinking-2025-05-14"}
    path = "/v1/messages/count_tokens" if counting else "/v1/messages"
    got = httpx.post(url + path, json=body, headers=headers)
    assert got.status_code == 200, got.text
    received, received_headers = up.requests[-1], up.headers[-1]
    upstream_model = "pydantic-ai-count_tokens-minimal" if counting else "docs-basic"
    expected = {**sent, "model": upstream_model}
    if not counting and not sent.get("stream"):
        expected.pop("stream", None)
    assert received == expected
    assert received_headers["anthropic-version"] == "2023-06-01"
    assert received_headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert received_headers["x-api-key"] == "sk-ant-k"  # tollway's key, never the client's
    if counting:
        assert got.json() == {"input_tokens": 16}


def test_thinking_signatures_survive_a_tool_turn(gateway: tuple[str, Upstream]) -> None:
    url, up = gateway
    client = _client(url)
    with client.messages.stream(model="sdkpy-fable-stream-a-refusal", max_tokens=2048,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        first = stream.get_final_message()
    thinking = [b for b in first.content if b.type == "thinking"]
    assert thinking and thinking[0].signature  # the signature_delta reached the client
    history = [{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                 for b in first.content]},
               {"role": "user", "content": "And?"}]
    client.messages.create(model="docs-basic", max_tokens=2048, messages=history,
                           thinking={"type": "enabled", "budget_tokens": 1024})
    back = up.requests[-1]["messages"][1]["content"][0]
    assert back["type"] == "thinking" and back["signature"] == thinking[0].signature


def test_a_redacting_firewall_keeps_the_thinking_signature(
    gateway: tuple[str, Upstream],
) -> None:
    url, up = gateway
    args: dict[str, Any] = {"model": "sdkpy-fable-stream-a-refusal", "max_tokens": 2048,
                            "messages": [{"role": "user", "content": "Hi"}]}
    with _client(up.base_url.removesuffix("/v1")).messages.stream(**args) as s:
        direct = s.get_final_message()
    with _client(url).messages.stream(**args, extra_body={"firewall": "redact-cards"}) as s:
        final = s.get_final_message()
    want = [(b.type, getattr(b, "thinking", None), getattr(b, "signature", None),
             getattr(b, "text", None)) for b in direct.content]
    got = [(b.type, getattr(b, "thinking", None), getattr(b, "signature", None),
            getattr(b, "text", None)) for b in final.content]
    assert got == want and want[0][2]  # written by tollway, the signature kept


def test_auth_by_x_api_key_or_bearer_and_anthropic_errors(tmp_path: Any) -> None:
    from tests.support.books import new_account

    dsn = f"sqlite:///{tmp_path}/t.db"
    _account, key = new_account(dsn, "acme")
    config = anthropic_config("http://127.0.0.1:9/v1", database=dsn, billing={"enabled": True})
    for model in config["models"].values():
        for deployment in model["deployments"]:
            deployment["prices"] = PRICES
    with run_tollway(config) as url:
        bad = httpx.post(url + "/v1/messages", headers={"x-api-key": "tw-wrong"}, content=b"{")
        assert bad.status_code == 401
        assert bad.json() == {"type": "error", "error": {
            "type": "authentication_error", "message": "Incorrect API key provided."}}
        for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
            r = httpx.post(url + "/v1/messages", headers=headers, json={"model": "docs-basic"})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["type"] == "invalid_request_error"
            assert "max_tokens" in r.json()["error"]["message"]
        r = httpx.post(url + "/v1/messages", headers={"x-api-key": key},
                       json={"model": "nope", "max_tokens": 1, "messages": []})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        r = httpx.get(url + "/v1/messages", headers={"x-api-key": key})
        assert r.status_code == 405
