"""Property: whatever is asked and whatever upstreams do, no debit exceeds its reservation
and no balance goes below zero — on SQLite and on PostgreSQL, through real HTTP.

Each example is a batch of concurrent requests against a fresh account with a random
credit: random models (honest, past their cap, over-reporting, reasoning outside
completion, failing mid-stream, no usage, cumulative usage, two deployments at
different prices), ``n`` choices, output caps, platform-tool loops of several rounds
with per-call prices, both modes, and clients that disconnect mid-stream. Then the
books must balance: ``tollway audit`` finds nothing (which includes every debit ≤ its
reservation and no negative balance), nothing stays reserved, and every complete
answer's usage shows exactly what the ledger debited.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.support.servers import run_tollway
from tollway.auth import KeyAuthenticator
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]
CHEAP = {"input_per_mtok": "100", "output_per_mtok": "400"}
DEAR = {"input_per_mtok": "300", "cached_input_per_mtok": "30", "output_per_mtok": "1200"}
BILLING = {"enabled": True, "platform_fee_fraction": "0.05", "fixed_fee_usd": "0.0001"}


def _sim(behaviour: str, prices: dict[str, str] = CHEAP, **options: Any) -> dict[str, Any]:
    return {"deployments": [{"provider": "sim", "model": behaviour, "prices": prices,
                             "options": {"tokens": 80, **options}}]}  # fmt: skip


MODELS: dict[str, Any] = {
    "honest": _sim("lorem"),
    "slow": _sim("lorem", tokens=150, tokens_per_second=300),
    "wild": _sim("lorem", DEAR, tokens=400, ignore_cap=True),
    "liar": _sim("lorem", extra_output_tokens=20_000),
    "xai": _sim("reasoner", DEAR, reasoning_usage="separate"),
    "failing": _sim("error-midstream"),
    "silent": _sim("lorem", usage=False),
    "running": _sim("lorem", usage="cumulative"),
    "two-prices": {"strategy": "weighted", "deployments": [
        {"provider": "sim", "model": "lorem", "name": "a", "prices": CHEAP},
        {"provider": "sim", "model": "lorem", "name": "b", "prices": DEAR},
    ]},
    "tool1": _sim("tool", tool_name="calculator", arguments={"expression": "6*7"}),
    "tool3": _sim("tool", DEAR, tool_name="calculator", tool_rounds=3,
                  arguments={"expression": "2**10"}),
}  # fmt: skip
PLAIN = [m for m in MODELS if not m.startswith("tool")]


def gateway_config(dsn: str, lease: bool = False) -> dict[str, Any]:
    # leased: holds from per-instance leases in memory, given back 0.2 s after the last
    leased = {"balance_lease": True, "lease_idle_seconds": 0.2} if lease else {}
    return {
        "database": dsn,
        "billing": BILLING | leased,
        "providers": {"sim": {"type": "simulated"}},
        "tools": {"calculator": {"price_usd": "0.0004"}, "max_rounds": 5},
        "models": MODELS,
    }


@dataclass(frozen=True)
class Ask:
    model: str
    stream: bool
    max_tokens: int
    n: int
    leave_after: int | None  # the client disconnects after this many SSE events
    tools: bool


@st.composite
def asks(draw: st.DrawFn) -> Ask:
    tools = draw(st.booleans())
    stream = draw(st.booleans())
    return Ask(
        model=draw(st.sampled_from(["tool1", "tool3"] if tools else PLAIN)),
        stream=stream,
        max_tokens=draw(st.integers(1, 60)),
        n=1 if tools else draw(st.integers(1, 3)),
        leave_after=draw(st.one_of(st.none(), st.integers(1, 6))) if stream else None,
        tools=tools,
    )


credits = st.sampled_from(["0.000001", "0.002", "0.01", "0.04", "0.15", "1"])


async def _account(dsn: str, credit: str) -> tuple[str, str]:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, f"p-{time.monotonic_ns()}", credit_usd=credit)
        return account.id, (await KeyAuthenticator(store).create_key(account.id)).secret
    finally:
        await store.close()


async def _one(client: httpx.AsyncClient, url: str, key: str, ask: Ask) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": ask.model, "stream": ask.stream, "max_tokens": ask.max_tokens,
        "messages": [{"role": "user", "content": "Tell me how billing works."}],
    }  # fmt: skip
    if ask.n > 1:
        body["n"] = ask.n
    if ask.tools:
        body["platform_tools"] = ["calculator"]
    headers = {"Authorization": f"Bearer {key}"}
    if not ask.stream:
        r = await client.post(url + "/v1/chat/completions", json=body, headers=headers)
        return {"status": r.status_code, "id": r.headers.get("x-tollway-request-id"),
                "usage": r.json().get("usage") if r.status_code == 200 else None}  # fmt: skip
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers=headers) as r:  # fmt: skip
        usage, seen = None, 0
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            seen += 1
            if ask.leave_after is not None and seen >= ask.leave_after:
                return {"status": r.status_code, "id": r.headers.get("x-tollway-request-id"),
                        "usage": None, "left": True}  # fmt: skip
            usage = orjson.loads(line[6:]).get("usage") or usage
        return {"status": r.status_code, "id": r.headers.get("x-tollway-request-id"),
                "usage": usage}


async def _batch(url: str, dsn: str, credit: str, batch: list[Ask]) -> None:
    account_id, key = await _account(dsn, credit)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=20)) as client:
        results = await asyncio.gather(*(_one(client, url, key, ask) for ask in batch))
    store = await open_storage(dsn)
    try:
        deadline = time.monotonic() + 20
        while True:  # disconnected requests settle on their own
            account = await store.get_account(account_id)
            assert account is not None
            if account.reserved_micros == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert account.reserved_micros == 0, "a reservation (or lease) was never given back"
        assert account.balance_micros >= 0
        violations = await audit(store, BillingConfig())
        assert violations == [], violations
        over = await store.db.fetch(
            "SELECT e.request_id, -e.amount_micros AS debit, r.amount_micros AS held"
            " FROM ledger_entries e JOIN reservations r ON r.request_id = e.request_id"
            " WHERE e.account_id = ? AND e.kind = 'debit' AND -e.amount_micros > r.amount_micros",
            account_id,
        )
        assert over == []
        debits = {e.entry.request_id: e.entry for e in await store.entries(account_id, limit=500)
                  if e.entry.kind == "debit"}  # fmt: skip
    finally:
        await store.close()
    for ask, result in zip(batch, results, strict=True):
        assert result["status"] in (200, 402, 502), (ask, result)  # never a 5xx of ours
        usage = result["usage"]
        if result["status"] == 200 and usage and "total_cost_usd" in usage:
            debit = debits[result["id"]]
            shown = Decimal(str(usage["total_cost_usd"]))
            assert int(shown * 1_000_000) == -debit.amount_micros, (ask, usage)


@pytest.mark.parametrize("lease", [False, True], ids=["per-request", "leased"])
def test_no_debit_exceeds_its_reservation_and_no_balance_goes_negative(
    dsn: str, lease: bool
) -> None:
    with run_tollway(gateway_config(dsn, lease)) as url:

        @settings(max_examples=examples(10), deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])  # fmt: skip
        @given(credit=credits, batch=st.lists(asks(), min_size=1, max_size=6))
        def check(credit: str, batch: list[Ask]) -> None:
            asyncio.run(_batch(url, dsn, credit, batch))

        check()
    done = subprocess.run(
        [sys.executable, "-m", "tollway", "audit", "--database", dsn], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
