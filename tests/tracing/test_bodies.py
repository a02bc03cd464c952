"""``tracing.store_bodies``: request and response bodies in traces, capped, per account.

End to end with billing's real keys (two accounts in one SQLite file), the
simulated provider, the firewall and platform tools; the caps as properties.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.support.servers import run_tollway
from tollway.auth import KeyAuthenticator
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.chunks import Finish, PlatformToolRecord, StreamError, TextDelta, ToolCallDelta
from tollway.storage import open_storage
from tollway.tracing.bodies import Budget, ResponseBody
from tollway.tracing.config import TracingConfig

ADMIN = "admin-secret"
CAP = 400  # characters per body in the e2e gateway
SIM = {"type": "simulated", "options": {"tokens_per_second": 0}}


def _accounts(dsn: str) -> dict[str, tuple[str, str]]:
    """name -> (account id, key) for alice (opted in by name), bob and carol (by id)."""

    async def go() -> dict[str, tuple[str, str]]:
        store = await open_storage(dsn)
        try:
            out = {}
            for name in ("alice", "bob", "carol"):
                account = await create_account(store, name, credit_usd=Decimal("10"))
                new = await KeyAuthenticator(store, BillingConfig()).create_key(account.id)
                out[name] = (account.id, new.secret)
            return out
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[str, dict[str, tuple[str, str]], Path]]:
    db = tmp_path_factory.mktemp("bodies") / "tollway.db"
    dsn = f"sqlite:///{db}"
    accounts = _accounts(dsn)
    config = {
        "database": dsn,
        "admin_key": ADMIN,
        "billing": {"enabled": True},
        "providers": {"sim": SIM},
        "models": {
            "echo": {"deployments": [{"provider": "sim", "model": "echo", "prices": "free"}]},
            "tool": {"deployments": [{"provider": "sim", "model": "tool", "prices": "free",
                                      "options": {"arguments": {"expression": "6*7"}}}]},
            "slow": {"deployments": [{"provider": "sim", "model": "lorem", "prices": "free",
                                      "options": {"tokens": 300, "tokens_per_second": 100}}]},
        },
        "tools": {"calculator": {}},
        "tracing": {"store_bodies_accounts": ["alice", accounts["carol"][0]],
                    "max_body_chars": CAP, "flush_interval_ms": 50},
    }
    with run_tollway(config) as url:
        yield url, accounts, db


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def trace(url: str, request_id: str, key: str | None = None, within: float = 5.0) -> Any:
    """GET the trace (as the key's account, or as the admin) once it is written."""
    path = f"/v1/traces/{request_id}" if key else f"/admin/traces/{request_id}"
    deadline = time.monotonic() + within
    while True:
        r = httpx.get(url + path, headers={"Authorization": f"Bearer {key or ADMIN}"})
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def streamed(c: openai.OpenAI, **kwargs: Any) -> tuple[str, str]:
    """(request id, content the client assembled) of a streamed request."""
    raw = c.chat.completions.with_raw_response.create(stream=True, **kwargs)
    text = "".join(chunk.choices[0].delta.content or ""
                   for chunk in raw.parse() if chunk.choices)
    return raw.request_id, text


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_an_opted_in_account_gets_redacted_bodies(
        gateway: tuple[str, dict[str, tuple[str, str]], Path], stream: bool) -> None:
    url, accounts, _db = gateway
    alice = accounts["alice"][1]
    kwargs: dict[str, Any] = {
        "model": "echo", "temperature": 0.5,
        "messages": [{"role": "user", "content": "write to jane@example.com"}],
        "extra_body": {"firewall": "redact-pii"}}
    if stream:
        request_id, content = streamed(client(url, alice), **kwargs)
    else:
        raw = client(url, alice).chat.completions.with_raw_response.create(**kwargs)
        request_id, content = raw.request_id, raw.parse().choices[0].message.content or ""
    assert "[REDACTED:email]" in content
    r = trace(url, request_id, alice)
    assert r.status_code == 200, r.text
    bodies = r.json()["bodies"]
    request = bodies["request"]
    assert request["model"] == "echo" and request["temperature"] == 0.5
    assert request.get("stream", False) is stream and request["firewall"] == "redact-pii"
    assert request["messages"] == [{"role": "user", "content": "write to [REDACTED:email]"}]
    choice = bodies["response"]["choices"][0]
    assert choice["message"]["content"] == content  # what the client got, assembled
    assert choice["finish_reason"] == "stop" and bodies["truncated"] is False
    assert bodies["response"]["model"] == "echo"
    text = json.dumps(r.json())
    assert "jane@example.com" not in text and alice not in text


def test_a_platform_tool_in_the_response_body(
        gateway: tuple[str, dict[str, tuple[str, str]], Path]) -> None:
    url, accounts, _db = gateway
    carol = accounts["carol"][1]  # opted in by account id
    request_id, content = streamed(
        client(url, carol), model="tool", messages=[{"role": "user", "content": "6*7?"}],
        extra_body={"platform_tools": ["calculator"]})
    bodies = trace(url, request_id, carol).json()["bodies"]
    message = bodies["response"]["choices"][0]["message"]
    assert message["content"] == content == "\n\n> calculator: 42\n\nThe tool returned: 42"
    [record] = message["platform_tool_calls"]
    assert record["name"] == "calculator" and record["result"] == 42
    assert bodies["request"]["platform_tools"] == ["calculator"]
    assert "tools" not in bodies["request"]  # the client's request, not the upstream rounds


def test_bodies_are_capped(gateway: tuple[str, dict[str, tuple[str, str]], Path]) -> None:
    url, accounts, _db = gateway
    alice = accounts["alice"][1]
    long = "word " * 200  # 1000 characters: more than the cap on both sides (echoed back)
    request_id, content = streamed(client(url, alice), model="echo",
                                   messages=[{"role": "user", "content": long}])
    bodies = trace(url, request_id, alice).json()["bodies"]
    assert bodies["truncated"] is True
    sent = bodies["request"]["messages"][0]["content"]
    kept, marker = sent.split("…[truncated ")
    assert long.startswith(kept) and len(kept) < CAP
    assert marker == f"{len(long) - len(kept)} characters]"
    got = bodies["response"]["choices"][0]["message"]["content"]
    kept, marker = got.split("…[truncated ")
    assert len(kept) == CAP and content.startswith(kept)
    assert marker == f"{len(content) - CAP} characters]"


def test_bodies_are_the_owners_only(
        gateway: tuple[str, dict[str, tuple[str, str]], Path]) -> None:
    url, accounts, db = gateway
    alice, bob = accounts["alice"][1], accounts["bob"][1]
    chosen = "req-chosen-by-alice"
    client(url, alice).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "private words"}],
        extra_headers={"X-Request-Id": chosen})
    mine = trace(url, chosen, alice).json()
    assert mine["bodies"]["request"]["messages"][0]["content"] == "private words"
    assert trace(url, chosen, bob, within=0.5).status_code == 404
    listed = httpx.get(url + "/v1/traces", headers={"Authorization": f"Bearer {alice}"}).json()
    assert listed["data"] and all("bodies" not in t for t in listed["data"])
    assert trace(url, chosen).json()["bodies"] == mine["bodies"]  # the admin API
    with sqlite3.connect(db) as conn:  # no key or header anywhere in the stored traces
        rows = conn.execute("SELECT data, bodies FROM traces").fetchall()
    stored = json.dumps(rows)
    assert alice not in stored and bob not in stored and "Bearer" not in stored


def test_a_client_that_leaves_gets_what_it_was_sent(
        gateway: tuple[str, dict[str, tuple[str, str]], Path]) -> None:
    url, accounts, _db = gateway
    alice = accounts["alice"][1]
    with httpx.stream("POST", url + "/v1/chat/completions", json={
            "model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]},
            headers={"Authorization": f"Bearer {alice}"}) as r:
        request_id = r.headers["x-request-id"]
        received = ""
        for line in r.iter_lines():
            if line.startswith("data: {"):
                received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if len(received) > 40:
                break
    t = trace(url, request_id, alice).json()
    assert t["client_disconnected"] is True
    kept = t["bodies"]["response"]["choices"][0]["message"]["content"]
    assert kept.startswith(received) and len(kept) < 300 * 10


def test_a_blocked_request_keeps_no_body(
        gateway: tuple[str, dict[str, tuple[str, str]], Path]) -> None:
    url, accounts, _db = gateway
    alice = accounts["alice"][1]
    with pytest.raises(openai.BadRequestError) as info:
        client(url, alice).chat.completions.with_raw_response.create(
            model="echo", messages=[{"role": "user", "content": "card 4111 1111 1111 1111"}],
            extra_body={"firewall": "strict-block"})
    request_id = info.value.response.headers["x-request-id"]
    t = trace(url, request_id, alice).json()
    assert t["status"] == 400 and t["bodies"] is None


def test_an_account_that_did_not_opt_in_has_none(
        gateway: tuple[str, dict[str, tuple[str, str]], Path]) -> None:
    url, accounts, _db = gateway
    bob = accounts["bob"][1]
    request_id, _ = streamed(client(url, bob), model="echo",
                             messages=[{"role": "user", "content": "hi"}])
    assert trace(url, request_id, bob).json()["bodies"] is None


# -- the caps, as properties --------------------------------------------------------------

TEXT = st.text(st.characters(exclude_characters="…"), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | TEXT,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(TEXT, inner, max_size=6),
    max_leaves=40)


def _kept(original: Any, capped: Any) -> int:
    """Check ``capped`` is ``original`` cut as documented; the characters of text it kept."""
    if isinstance(capped, str) and capped.startswith("…[") and not isinstance(original, str):
        return 0  # a container past the depth limit
    if isinstance(original, str):
        if capped == original:
            return len(original)
        kept, _, rest = capped.rpartition("…[truncated ")
        assert original.startswith(kept) and rest == f"{len(original) - len(kept)} characters]"
        return len(kept)
    if isinstance(original, dict):
        keys = [k for k in capped if k != "…"]
        assert keys == list(original)[:len(keys)]
        if len(keys) < len(original):
            assert capped["…"] == f"…[{len(original) - len(keys)} more keys]"
        return sum(_kept(original[k], capped[k]) for k in keys)
    if isinstance(original, list):
        whole = len(capped)
        if capped and capped[-1] == f"…[{len(original) - whole + 1} more items]":
            whole -= 1
        return sum(_kept(o, c) for o, c in zip(original[:whole], capped[:whole], strict=True))
    assert capped == original
    return 0


@settings(max_examples=examples(100), deadline=None)
@given(value=JSON, limit=st.integers(1, 300))
def test_a_capped_value_is_whole_or_cut_where_it_says(value: Any, limit: int) -> None:
    budget = Budget(limit)
    capped = budget.value(value)
    assert (capped == value) is (budget.dropped == 0)
    assert _kept(value, capped) <= limit  # string values never pass the budget


def test_deep_nesting_is_cut() -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    budget = Budget(10_000)
    capped = budget.value(deep)
    assert budget.dropped == 1 and json.dumps(capped).count("[") == 33


@settings(max_examples=examples(100), deadline=None)
@given(pieces=st.lists(st.text(max_size=30), max_size=30), limit=st.integers(1, 200))
def test_a_response_is_its_stream_assembled_and_capped(pieces: list[str], limit: int) -> None:
    body = ResponseBody(limit)
    for piece in pieces:
        body.add(TextDelta(piece))
    body.add(Finish("stop"))
    full = "".join(pieces)
    [choice] = body.json()["choices"]
    content = choice["message"]["content"] if full else None
    if len(full) <= limit:
        assert content == (full or None) and body.budget.dropped == 0
    else:
        assert content == full[:limit] + f"…[truncated {len(full) - limit} characters]"
    assert sum(len(t) for parts in body.texts.values() for t in parts) <= limit


def test_every_event_kind_is_assembled() -> None:
    body = ResponseBody(1000)
    for event in (TextDelta("think", "reasoning"), TextDelta("Hi"), TextDelta("b", choice=1),
                  ToolCallDelta(0, '{"a"', "call_1", "f"), ToolCallDelta(0, ": 1}"),
                  PlatformToolRecord("calculator", "{}", result=2, duration_ms=1.5),
                  Finish("tool_calls"), StreamError(502, "upstream died")):
        body.add(event)
    out = body.json()
    zero, one = out["choices"]
    assert zero["message"]["reasoning_content"] == "think" and zero["message"]["content"] == "Hi"
    assert zero["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    assert zero["message"]["platform_tool_calls"][0]["result"] == 2
    assert zero["finish_reason"] == "tool_calls" and one["message"]["content"] == "b"
    assert out["error"] == {"message": "upstream died", "type": "api_error", "code": None}


def test_opt_in_by_id_or_name() -> None:
    config = TracingConfig(store_bodies_accounts=frozenset({"acct_1", "acme"}))
    assert config.stores_bodies_for("acct_1") and config.stores_bodies_for("acct_2", "acme")
    assert not config.stores_bodies_for("acct_2", "other") and not config.stores_bodies_for(None)
    assert TracingConfig(store_bodies=True).stores_bodies_for(None)
