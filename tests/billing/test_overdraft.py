"""No path debits more than was reserved, and no account goes below zero.

Each case gives an account exactly the reservation its request needs (read from the
402 that a nearly empty account gets), then runs the request that used to overdraw
it: ``n`` choices, a platform-tool loop, an upstream that ignores its output cap
(a real recording replayed whatever ``max_tokens`` says), an upstream that reports
more usage than it generated. Real servers, both databases.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.billing.test_e2e import books, setup_account
from tests.support.servers import Upstream, run_tollway, send_sse
from tollway.auth import KeyAuthenticator
from tollway.billing.ledger import create_account
from tollway.storage import open_storage

STREAMS = Path(__file__).resolve().parents[3] / "shared/conformance/streams"
PRICES = {"input_per_mtok": "1000", "output_per_mtok": "1000"}  # $0.001 a token
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=[False, True], ids=["per-request", "leased"])
def lease(request: pytest.FixtureRequest) -> bool:
    """Each case with a reservation per request and with balance leases."""
    return bool(request.param)


def _config(dsn: str, upstream_url: str | None = None, lease: bool = False) -> dict[str, Any]:
    def sim(behaviour: str, **options: Any) -> dict[str, Any]:
        return {"deployments": [{"provider": "sim", "model": behaviour, "prices": PRICES,
                                 "options": options}]}  # fmt: skip

    config: dict[str, Any] = {
        "database": dsn,
        "billing": {"enabled": True, "platform_fee_fraction": "0.1", "balance_lease": lease},
        "providers": {"sim": {"type": "simulated"}},
        "tools": {"calculator": {"price_usd": "0.002"}, "max_rounds": 5},
        "models": {
            "lorem": sim("lorem", tokens=60),
            "tool": sim("tool", tool_name="calculator", tool_rounds=3,
                        arguments={"expression": "6*7"}),
            "liar": sim("lorem", tokens=10, extra_output_tokens=50_000),
            "counting": sim("lorem", tokens=400, ignore_cap=True, usage="cumulative",
                            extra_output_tokens=100),
        },
    }  # fmt: skip
    if upstream_url:
        config["providers"]["up"] = {"type": "openai", "base_url": upstream_url}
        config["models"]["wild"] = {
            "deployments": [{"provider": "up", "model": "gpt-4o", "prices": PRICES}]
        }
    return config


def _account(dsn: str, credit_micros: int) -> str:
    async def go() -> str:
        store = await open_storage(dsn)
        try:
            account = await create_account(
                store, f"exact-{credit_micros}", credit_usd=Decimal(credit_micros) / 1_000_000
            )
            return (await KeyAuthenticator(store).create_key(account.id)).secret
        finally:
            await store.close()

    return asyncio.run(go())


def _needed(url: str, key: str, body: dict[str, Any]) -> int:
    """What admission reserves for ``body``: the amount its 402 names."""
    r = httpx.post(url + "/v1/chat/completions", json=body,
                   headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert r.status_code == 402, r.text
    found = re.search(r"needs \$([0-9.]+) reserved", r.json()["error"]["message"])
    assert found, r.text
    return int(Decimal(found.group(1)) * 1_000_000)


def _run(url: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip


def _answer(r: httpx.Response, stream: bool) -> tuple[str, str | None]:
    """(choice 0's content, its finish reason) from a response of either mode."""
    if not stream:
        choice = r.json()["choices"][0]
        return choice["message"]["content"] or "", choice["finish_reason"]
    text, finish = [], None
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                text.append(choice["delta"].get("content") or "")
                finish = choice.get("finish_reason") or finish
    return "".join(text), finish


def _trace(url: str, key: str, request_id: str) -> dict[str, Any]:
    deadline = time.time() + 5
    while True:
        r = httpx.get(f"{url}/v1/traces/{request_id}", headers={"Authorization": f"Bearer {key}"})
        if r.status_code == 200 or time.time() > deadline:
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.05)


def _account_id(dsn: str, key: str) -> str:
    async def go() -> str:
        store = await open_storage(dsn)
        try:
            found = await KeyAuthenticator(store).authenticate(f"Bearer {key}")
            return found.account_id
        finally:
            await store.close()

    return asyncio.run(go())


def _settled(dsn: str, key: str) -> tuple[Any, list[Any]]:
    account, entries, violations = books(dsn, _account_id(dsn, key))
    assert violations == [], violations
    assert account.balance_micros >= 0 and account.reserved_micros == 0
    return account, entries


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_are_reserved(dsn: str, stream: bool, lease: bool) -> None:
    _, poor = setup_account(dsn, "0.000001")
    body = {"model": "lorem", "n": 4, "max_tokens": 50, "stream": stream, "messages": HI}
    with run_tollway(_config(dsn, lease=lease)) as url:
        needed = _needed(url, poor, body)
        key = _account(dsn, needed)
        r = _run(url, key, body)
        assert r.status_code == 200, r.text
        if not stream:
            out = r.json()
            assert len(out["choices"]) == 4 and out["usage"]["completion_tokens"] == 200
        one = _account(dsn, needed // 2)  # covers one choice, not four: refused up front
        assert _run(url, one, body).status_code == 402
    account, entries = _settled(dsn, key)
    debit = entries[0].entry
    assert debit.kind == "debit" and debit.completion_tokens == 200 and not debit.partial
    assert 0 < -debit.amount_micros <= needed


@pytest.mark.parametrize("stream", [False, True])
def test_tool_rounds_extend_the_reservation_or_stop(dsn: str, stream: bool, lease: bool) -> None:
    _, poor = setup_account(dsn, "0.000001")
    body = {"model": "tool", "max_tokens": 30, "stream": stream, "messages": HI,
            "platform_tools": ["calculator"]}  # fmt: skip
    with run_tollway(_config(dsn, lease=lease)) as url:
        needed = _needed(url, poor, body)
        rich = _account(dsn, needed * 100)
        r = _run(url, rich, body)  # three rounds of calls, then the answer
        text, finish = _answer(r, stream)
        assert r.status_code == 200 and text.endswith("The tool returned: 42") and finish == "stop"
        exact = _account(dsn, needed)  # the first round only
        r = _run(url, exact, body)
        assert r.status_code == 200, r.text
        text, finish = _answer(r, stream)
        assert finish == "length" and "balance cannot cover another round" in text
        assert "The tool returned" not in text
    _, entries = _settled(dsn, rich)
    assert entries[0].entry.kind == "debit" and -entries[0].entry.amount_micros > needed
    account, entries = _settled(dsn, exact)
    assert entries[0].entry.kind == "debit" and -entries[0].entry.amount_micros <= needed


async def _ignores_the_cap(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    # 177 completion tokens, whatever max_tokens says (a real gpt-4o recording)
    payload = (STREAMS / "openai/openai-python-json-object-long.sse").read_bytes()
    return await send_sse(request, payload, upstream, chunk_delay=0.001)


def test_an_upstream_past_its_cap_is_cut_and_billed_the_reservation(dsn: str, lease: bool) -> None:
    _, poor = setup_account(dsn, "0.000001")
    body = {"model": "wild", "max_tokens": 20, "stream": True, "messages": HI}
    with Upstream(_ignores_the_cap) as up, run_tollway(_config(dsn, up.base_url, lease)) as url:
        needed = _needed(url, poor, body)
        key = _account(dsn, needed)
        r = _run(url, key, body)
        assert up.requests[-1]["max_tokens"] == 20  # it was told
    assert r.status_code == 200
    events = [line for line in r.text.splitlines() if line.startswith("data: {")]
    assert '"finish_reason":"length"' in events[-1]  # cut, well before its 177 tokens
    assert len(events) < 100
    account, entries = _settled(dsn, key)
    overage, debit = entries[0].entry, entries[1].entry
    assert debit.kind == "debit" and -debit.amount_micros <= needed
    assert overage.kind == "provider_overage" and overage.amount_micros == 0
    assert overage.total_cost_micros and overage.total_cost_micros > 0
    assert account.balance_micros == needed + debit.amount_micros  # what is left, never < 0


@pytest.mark.parametrize("stream", [False, True])
def test_usage_beyond_the_reservation_is_a_provider_overage(
    dsn: str, stream: bool, lease: bool
) -> None:
    _, poor = setup_account(dsn, "0.000001")
    body = {"model": "liar", "max_tokens": 20, "stream": stream, "messages": HI,
            "stream_options": {"include_usage": True} if stream else None}  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    with run_tollway(_config(dsn, lease=lease)) as url:
        needed = _needed(url, poor, body)
        key = _account(dsn, needed * 3)
        r = _run(url, key, body)
        trace = _trace(url, key, r.headers["x-tollway-request-id"])
    assert r.status_code == 200, r.text
    if stream:
        usage = [line for line in r.text.splitlines() if '"usage":{' in line][-1]
        shown = Decimal(re.search(r'"total_cost_usd":([0-9.e-]+)', usage).group(1))  # type: ignore[union-attr]
    else:
        shown = Decimal(str(r.json()["usage"]["total_cost_usd"]))
    _, entries = _settled(dsn, key)
    overage, debit = entries[0].entry, entries[1].entry
    assert debit.kind == "debit" and overage.kind == "provider_overage"
    # admitted against the prompt's byte bound (funded 3×), so at least what a 402 named
    reserved = Decimal(re.search(r"than the \$([0-9.]+) reserved", overage.note or "").group(1))  # type: ignore[union-attr]
    held = int(reserved * 1_000_000)
    assert held >= needed
    assert -debit.amount_micros == held  # the whole reservation, not a micro more
    assert int(shown * 1_000_000) == -debit.amount_micros  # the client sees what the ledger debits
    assert debit.completion_tokens == 10 + 50_000  # the upstream's word, kept on record
    cost = 1_100 * (debit.prompt_tokens + debit.completion_tokens)  # $0.001 a token + 10 %
    assert overage.total_cost_micros == cost - held
    assert Decimal(trace["cost"]["total_cost_usd"]) * 1_000_000 == held  # the trace agrees
    assert Decimal(trace["cost"]["provider_overage_usd"]) * 1_000_000 == cost - held


def test_a_running_usage_past_the_budget_cuts_the_stream(dsn: str, lease: bool) -> None:
    """An upstream that reports its usage on every chunk is cut by that figure, at once."""
    _, poor = setup_account(dsn, "0.000001")
    body = {"model": "counting", "max_tokens": 20, "stream": True, "messages": HI}
    with run_tollway(_config(dsn, lease=lease)) as url:
        needed = _needed(url, poor, body)
        key = _account(dsn, needed)
        r = _run(url, key, body)
    text, finish = _answer(r, True)
    assert r.status_code == 200 and finish == "length"
    assert len(text.split()) <= 2  # its first running usage already said 101 tokens
    _, entries = _settled(dsn, key)
    overage, debit = entries[0].entry, entries[1].entry
    assert (debit.kind, overage.kind) == ("debit", "provider_overage")
    assert -debit.amount_micros == needed
