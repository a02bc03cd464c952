"""End to end through the real gateway (uvicorn on 127.0.0.1) and the openai SDK.

Billing is installed explicitly with a BillingConfig. The kill -9 test lives in
``tests/adversarial/test_crash.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import Upstream, serve_app
from tollway.assembly import create_app
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.billing.plugin import BillingPlugin
from tollway.config import parse_settings
from tollway.storage import open_storage
from tollway.storage.base import LEASE_PREFIX

BILLING = BillingConfig(platform_fee_fraction=Decimal("0.05"), key_cache_ttl_seconds=60)
PRICES = {"input_per_mtok": 100, "cached_input_per_mtok": 50, "output_per_mtok": 400}


def gateway_config(dsn: str, upstream_url: str | None = None) -> dict[str, Any]:
    providers: dict[str, Any] = {"sim": {"type": "simulated"}}
    models: dict[str, Any] = {
        "echo": {"deployments": [{"provider": "sim", "model": "echo", "prices": PRICES}]},
        "slow": {"deployments": [{"provider": "sim", "model": "lorem", "prices": PRICES,
                                  "options": {"tokens": 400, "tokens_per_second": 100}}]},
    }  # fmt: skip
    if upstream_url:
        providers["up"] = {"type": "openai", "base_url": upstream_url}
        models["up"] = {"deployments": [{"provider": "up", "model": "u", "prices": PRICES}]}
    return {"database": dsn, "providers": providers, "models": models}


@contextmanager
def serve(config: dict[str, Any], billing: BillingConfig = BILLING) -> Iterator[str]:
    """tollway with billing in a thread; yields the base URL."""
    app = create_app(parse_settings(config), [BillingPlugin(billing)])
    with serve_app(app) as url:
        yield url


def setup_account(dsn: str, credit: str) -> tuple[str, str]:
    """(account id, API key) for a new account with ``credit`` USD."""

    async def go() -> tuple[str, str]:
        from tollway.auth import KeyAuthenticator

        store = await open_storage(dsn)
        try:
            account = await create_account(store, "acme", credit_usd=credit)
            new = await KeyAuthenticator(store).create_key(account.id)
        finally:
            await store.close()
        return account.id, new.secret

    return asyncio.run(go())


def books(dsn: str, account_id: str) -> tuple[Any, list[Any], list[Any]]:
    """(account, ledger entries newest first, audit violations)."""

    async def go() -> tuple[Any, list[Any], list[Any]]:
        store = await open_storage(dsn)
        try:
            return (await store.get_account(account_id), await store.entries(account_id),
                    await audit(store, BILLING))  # fmt: skip
        finally:
            await store.close()

    return asyncio.run(go())


def test_sdk_usage_equals_ledger_and_caller_endpoints(dsn: str) -> None:
    account_id, key = setup_account(dsn, "10.00")
    with serve(gateway_config(dsn)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        usage = None
        for chunk in client.chat.completions.create(
            model="echo", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hello there billing"}],
        ):  # fmt: skip
            if chunk.usage is not None:
                usage = chunk.usage
        assert usage is not None
        seen = usage.model_dump()
        me = httpx.get(url + "/v1/account", headers={"Authorization": f"Bearer {key}"}).json()
        page = httpx.get(url + "/v1/ledger?limit=1",
                         headers={"Authorization": f"Bearer {key}"}).json()  # fmt: skip
        bad = httpx.get(url + "/v1/account", headers={"Authorization": "Bearer tw-nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    account, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert debit.kind == "debit" and not debit.partial
    assert (debit.prompt_tokens, debit.completion_tokens) == (
        seen["prompt_tokens"], seen["completion_tokens"],
    )  # fmt: skip
    for name, micros in (("base_cost_usd", debit.base_cost_micros),
                         ("platform_fee_usd", debit.platform_fee_micros),
                         ("total_cost_usd", debit.total_cost_micros)):  # fmt: skip
        assert Decimal(str(seen[name])) == Decimal(micros) / 1_000_000, name
    assert debit.total_cost_micros > 0 and violations == []
    assert me["balance_usd"] == "%.6f" % (Decimal(account.balance_micros) / 1_000_000)
    assert page["data"][0]["total_cost_usd"] == "%.6f" % (Decimal(debit.total_cost_micros) / 10**6)
    assert page["has_more"] is True


async def _never(request: Any, upstream: Upstream) -> Any:
    raise AssertionError("the upstream must not be called")


def test_402_before_any_upstream_call(dsn: str) -> None:
    account_id, key = setup_account(dsn, "0.0001")
    with Upstream(_never) as upstream, serve(gateway_config(dsn, upstream.base_url)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="up", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 402
        body = err.value.body
        assert isinstance(body, dict) and body["code"] == "insufficient_balance"
        assert "available" in body["message"]
        assert upstream.requests == []
    _, entries, violations = books(dsn, account_id)
    assert [e.entry.kind for e in entries] == ["credit"] and violations == []


@pytest.mark.parametrize("lease", [False, True], ids=["per-request", "leased"])
def test_fifty_concurrent_streams(dsn: str, lease: bool) -> None:
    # Each reserves ≈ (prompt + 4096 output) × $400/M ≈ $1.64 (+5%); $20 covers about 11.
    account_id, key = setup_account(dsn, "20.00")
    billing = BILLING.model_copy(update={"balance_lease": lease})
    with serve(gateway_config(dsn), billing) as url:

        async def one(client: httpx.AsyncClient) -> int:
            async with client.stream("POST", url + "/v1/chat/completions", json={
                "model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}],
            }, headers={"Authorization": f"Bearer {key}"}) as r:  # fmt: skip
                async for _ in r.aiter_bytes():
                    pass
                return r.status_code

        async def run() -> list[int]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as c:
                return await asyncio.gather(*(one(c) for _ in range(50)))

        statuses = asyncio.run(run())
    assert statuses.count(200) >= 1 and statuses.count(402) >= 1
    assert set(statuses) == {200, 402}
    account, entries, violations = books(dsn, account_id)
    assert account.balance_micros >= 0 and account.reserved_micros == 0
    assert sum(1 for e in entries if e.entry.kind == "debit") == statuses.count(200)
    assert violations == []
    # leased: the requests held from leases in memory, none wrote a reservation of its own
    owners = {r["request_id"][: len(LEASE_PREFIX)] == LEASE_PREFIX for r in reservations(dsn)}
    assert owners == {lease}


def reservations(dsn: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        store = await open_storage(dsn)
        try:
            return [dict(r) for r in await store.db.fetch("SELECT * FROM reservations")]
        finally:
            await store.close()

    return asyncio.run(go())


def test_client_disconnect_is_billed_partially(dsn: str) -> None:
    account_id, key = setup_account(dsn, "5.00")
    with serve(gateway_config(dsn)) as url:
        with httpx.stream("POST", url + "/v1/chat/completions", json={
            "model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}],
        }, headers={"Authorization": f"Bearer {key}"}) as r:  # fmt: skip
            seen = 0
            for line in r.iter_lines():
                seen += line.startswith("data: ")
                if seen == 5:
                    break
        deadline = time.time() + 10
        while time.time() < deadline:
            _, entries, _ = books(dsn, account_id)
            if entries[0].entry.kind == "debit":
                break
            time.sleep(0.1)
    account, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert debit.kind == "debit" and debit.partial
    assert 0 < (debit.completion_tokens or 0) < 400
    assert account.reserved_micros == 0 and violations == []
