"""/v1/messages and the rest of the pipeline: firewalls on both sides (a property over any
chunking of the upstream's stream), the reservation and the ledger (``usage.tollway_cost``
equals the ledger entry, Anthropic's cache tiers priced), and no 5xx on any body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.api.messages.support import sse_events
from tests.support.books import books, new_account
from tests.support.servers import Upstream, run_tollway

SECRET = "4111 1111 1111 1111"
TEXT = f"Your card {SECRET} is on file, thanks."
PRICES = {"input_per_mtok": 3, "cached_input_per_mtok": "0.3", "cache_write_per_mtok": "3.75",
          "cache_write_1h_per_mtok": 6, "output_per_mtok": 15}
USAGE_START = {"input_tokens": 10, "cache_creation_input_tokens": 300,
               "cache_read_input_tokens": 2000, "output_tokens": 1,
               "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                  "ephemeral_1h_input_tokens": 200}}


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **obj})}\n\n".encode()


def _stream(pieces: list[str]) -> bytes:
    message = {"id": "msg_x", "type": "message", "role": "assistant", "content": [],
               "model": "claude-x", "stop_reason": None, "stop_sequence": None,
               "usage": USAGE_START}
    out = [_event("message_start", {"message": message}),
           _event("content_block_start", {"index": 0, "content_block": {"type": "text",
                                                                         "text": ""}})]
    out += [_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                  "text": p}}) for p in pieces]
    out += [_event("content_block_stop", {"index": 0}),
            _event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": 12}}),
            _event("message_stop", {})]
    return b"".join(out)


class Scripted:
    """An Anthropic upstream streaming ``TEXT`` cut at ``cuts``."""

    def __init__(self) -> None:
        self.cuts: list[int] = []

    async def __call__(self, request: web.Request, upstream: Upstream) -> web.StreamResponse:
        bounds = [0, *sorted(set(self.cuts)), len(TEXT)]
        pieces = [TEXT[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        if not upstream.requests[-1].get("stream"):
            return web.json_response({
                "id": "msg_x", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {**USAGE_START, "output_tokens": 12}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in _stream(pieces).split(b"\n\n")[:-1]:
            await resp.write(part + b"\n\n")
        await resp.write_eof()
        return resp


def _config(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"anth": {"type": "anthropic", "base_url": base_url, "api_key": "k"}},
        "models": {"claude": {"deployments": [{"provider": "anth", "model": "claude-x"}]}},
        "firewalls": {"redact-cards": {"detectors": {"credit_card": "redact"}},
                      "block-cards": {"detectors": {"credit_card": "block"}}},
        **extra,
    }


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, Upstream, Scripted]]:
    script = Scripted()
    with Upstream(script) as up, run_tollway(_config(up.base_url)) as url:
        yield url, up, script


def _text(url: str, policy: str) -> tuple[str, str | None]:
    body = {"model": "claude", "max_tokens": 50, "stream": True, "firewall": policy,
            "messages": [{"role": "user", "content": "Hi"}]}
    got = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert got.status_code == 200, got.text
    text, stop = "", None
    for name, data in sse_events(got.content):
        obj = json.loads(data)
        if name == "content_block_delta":
            text += obj["delta"]["text"]
        elif name == "message_delta":
            stop = obj["delta"]["stop_reason"]
    return text, stop


@settings(max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(1, len(TEXT) - 1), max_size=12))
def test_the_response_firewall_does_not_depend_on_chunking(
    scripted: tuple[str, Upstream, Scripted], cuts: list[int]
) -> None:
    url, _up, script = scripted
    script.cuts = cuts
    assert _text(url, "redact-cards") == (TEXT.replace(SECRET, "[REDACTED:credit_card]"),
                                          "end_turn")
    text, stop = _text(url, "block-cards")
    assert (text, stop) == (TEXT[: TEXT.index(SECRET)], "refusal")


def test_the_request_firewall_reads_every_block_of_the_clients_body(
    scripted: tuple[str, Upstream, Scripted],
) -> None:
    url, up, _script = scripted
    body = {"model": "claude", "max_tokens": 50, "firewall": "redact-cards",
            "system": [{"type": "text", "text": "card " + SECRET, "cache_control":
                        {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "found " + SECRET}]},
                {"type": "future_block", "note": SECRET}]}]}
    got = httpx.post(url + "/v1/messages", json={**body, "stream": True},
                     headers={"x-api-key": "k"})
    assert got.status_code == 200, got.text
    sent = json.dumps(up.requests[-1])
    assert SECRET not in sent and sent.count("[REDACTED:credit_card]") == 3
    assert up.requests[-1]["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    blocked = httpx.post(url + "/v1/messages", json={**body, "firewall": "block-cards"},
                         headers={"x-api-key": "k"})
    assert blocked.status_code == 400
    assert blocked.json()["error"]["type"] == "invalid_request_error"
    assert SECRET not in blocked.text


def test_tollway_cost_equals_the_ledger_entry_with_cache_tiers(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/b.db"
    account_id, key = new_account(dsn, "acme")
    script = Scripted()
    with Upstream(script) as up:
        config = _config(up.base_url, database=dsn, billing={"enabled": True})
        config["models"]["claude"]["deployments"][0]["prices"] = PRICES
        with run_tollway(config) as url:
            client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
            # a prompt as long as the upstream's usage says (the reservation covers it)
            prompt = [{"role": "user", "content": "word " * 2400}]
            with client.messages.stream(model="claude", max_tokens=50, messages=prompt) as s:
                final = s.get_final_message()
            whole = client.messages.create(model="claude", max_tokens=50, messages=prompt)
            raw = httpx.post(url + "/v1/messages", headers={"x-api-key": key}, json={
                "model": "claude", "max_tokens": 50, "stream": True, "messages": prompt})
    usage = final.usage.model_dump()
    assert usage["cache_read_input_tokens"] == 2000 and usage["output_tokens"] == 12
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 100,
                                       "ephemeral_1h_input_tokens": 200}
    _account, entries, violations = books(dsn, account_id)
    assert violations == []
    debits = [e.entry for e in entries if e.entry.kind == "debit"]
    assert len(debits) == 3  # newest first: raw stream, whole, SDK stream
    # input 10 at 3, reads 2000 at 0.3, 5m writes 100 at 3.75, 1h writes 200 at 6, output 12 at 15
    expected = (10 * 3 + 2000 * Decimal("0.3") + 100 * Decimal("3.75") + 200 * 6 + 12 * 15)
    assert [Decimal(d.base_cost_micros) for d in debits] == [expected] * 3, debits
    delta = [json.loads(d) for n, d in sse_events(raw.content) if n == "message_delta"][0]
    assert delta["usage"]["output_tokens"] == 12  # the upstream's, passed on
    for cost, debit in ((delta["usage"]["tollway_cost"], debits[0]),
                        (whole.usage.model_extra["tollway_cost"], debits[1])):
        for name, micros in (("base_cost_usd", debit.base_cost_micros),
                             ("platform_fee_usd", debit.platform_fee_micros),
                             ("total_cost_usd", debit.total_cost_micros)):
            assert Decimal(str(cost[name])) == Decimal(micros) / 10**6, name


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["claude", "nope"]) | JSON,
    "max_tokens": st.integers(-5, 2**40) | JSON,
    "messages": st.lists(st.fixed_dictionaries({}, optional={
        "role": st.sampled_from(["user", "assistant", "system"]),
        "content": st.text(max_size=8) | st.lists(JSON, max_size=3) | st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(
                ["text", "image", "document", "tool_use", "tool_result", "thinking", "x"])},
                optional={"text": JSON, "source": JSON, "id": JSON, "name": JSON,
                          "input": JSON, "content": JSON, "tool_use_id": JSON}), max_size=3),
    }), max_size=3) | JSON,
    "system": JSON, "tools": JSON, "tool_choice": JSON, "thinking": JSON, "stream": JSON,
    "temperature": JSON, "top_k": JSON, "stop_sequences": JSON, "metadata": JSON,
})


@settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(body=FIELDS)
def test_no_body_gets_a_5xx(scripted: tuple[str, Upstream, Scripted], body: Any) -> None:
    url, _up, _script = scripted
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = httpx.post(url + path, json=body, headers={"x-api-key": "k"})
        assert r.status_code < 500, (path, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["type"] == "error" and r.json()["error"]["message"]


def test_a_balance_that_cannot_cover_the_request_is_anthropics_402(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/p.db"
    account_id, key = new_account(dsn, "poor", credit="0.000010")
    script = Scripted()
    with Upstream(script) as up:
        config = _config(up.base_url, database=dsn, billing={"enabled": True})
        config["models"]["claude"]["deployments"][0]["prices"] = PRICES
        with run_tollway(config) as url:
            client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as caught:
                client.messages.create(model="claude", max_tokens=4000,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 402
    assert caught.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert up.requests == []  # refused before any upstream call
    _account, entries, violations = books(dsn, account_id)
    assert violations == [] and [e.entry.kind for e in entries] == ["credit"]
