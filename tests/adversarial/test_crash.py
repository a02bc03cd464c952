"""kill -9 with requests mid-stream, then a restart: every reservation is released and the
books balance (``tollway audit`` exits 0), on SQLite and on PostgreSQL.

In flight when the process dies: a plain stream, ``n = 2`` choices, a platform-tool
loop between rounds (its reservation extended), a non-streaming request, and one that
already finished (its debit must survive untouched).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.adversarial.test_overdraft import _account
from tests.support.servers import free_port
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]
PRICES = {"input_per_mtok": "100", "output_per_mtok": "400"}
SERVER = textwrap.dedent(
    """
    import sys, orjson, uvicorn
    from tollway.assembly import create_app
    from tollway.config import parse_settings

    app = create_app(parse_settings(orjson.loads(sys.argv[1])))
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    """
)


def gateway_config(dsn: str, lease: bool = False) -> dict[str, Any]:
    def slow(behaviour: str, **options: Any) -> dict[str, Any]:
        return {"deployments": [{"provider": "sim", "model": behaviour, "prices": PRICES,
                                 "options": {"tokens_per_second": 40, **options}}]}  # fmt: skip

    return {
        "database": dsn,
        "billing": {"enabled": True, "platform_fee_fraction": "0.05", "balance_lease": lease},
        "tracing": {"enabled": False},
        "providers": {"sim": {"type": "simulated"}},
        "tools": {"calculator": {"price_usd": "0.001"}, "max_rounds": 10},
        "models": {
            "slow": slow("lorem", tokens=400),
            "quick": slow("lorem", tokens=3, tokens_per_second=0),
            "tools": slow("tool", tool_name="calculator", tool_rounds=8, tokens_per_second=8,
                          arguments={"expression": "6*7"}),
        },
    }  # fmt: skip


@contextmanager
def server_process(config: dict[str, Any]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, orjson.dumps(config).decode(), str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("tollway subprocess did not start") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)


async def _books(dsn: str, account_id: str) -> tuple[Any, list[Any], list[Any], list[Any]]:
    store = await open_storage(dsn)
    try:
        return (
            await store.get_account(account_id),
            [e.entry for e in await store.entries(account_id)],
            await store.open_reservations(),
            await audit(store, BillingConfig()),
        )
    finally:
        await store.close()


async def _kill_in_flight(
    url: str, key: str, dsn: str, account_id: str, proc: subprocess.Popen[bytes],
    lease: bool = False,
) -> None:
    """Start every request, wait until all are mid-way, then kill -9 the server."""
    headers = {"Authorization": f"Bearer {key}"}
    hi = [{"role": "user", "content": "go"}]
    bodies = [
        {"model": "slow", "stream": True, "messages": hi},
        {"model": "slow", "stream": True, "n": 2, "max_tokens": 300, "messages": hi},
        {"model": "tools", "stream": True, "platform_tools": ["calculator"], "messages": hi},
        {"model": "slow", "messages": hi},
    ]
    client = httpx.AsyncClient(timeout=60)
    started = asyncio.Event()
    seen: list[int] = [0] * len(bodies)

    async def one(i: int, body: dict[str, Any]) -> None:
        if not body.get("stream"):
            await client.post(url + "/v1/chat/completions", json=body, headers=headers)
            return
        async with client.stream("POST", url + "/v1/chat/completions", json=body,
                                 headers=headers) as r:  # fmt: skip
            async for line in r.aiter_lines():
                seen[i] += line.startswith("data: {")
                if all(seen[j] >= 3 for j, b in enumerate(bodies) if b.get("stream")):
                    started.set()

    tasks = [asyncio.ensure_future(one(i, b)) for i, b in enumerate(bodies)]
    await asyncio.wait_for(started.wait(), 30)
    # one reservation per request, or the one lease they all hold from (in memory)
    expected = 1 if lease else len(bodies)
    deadline = time.monotonic() + 10
    while True:  # the tool loop has run at least one tool, so its reservation grew
        _, entries, open_, _ = await _books(dsn, account_id)
        if len(open_) == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(open_) == expected
    if lease:  # the holds are not in the database: give the tool loop time to run a tool
        await asyncio.sleep(0.5)
    held, _, open_, _ = await _books(dsn, account_id)
    assert held.reserved_micros == sum(r.amount_micros for r in open_) > 0
    proc.send_signal(signal.SIGKILL)  # with every client still connected
    proc.wait(10)
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()


@pytest.mark.parametrize("lease", [False, True], ids=["per-request", "leased"])
def test_kill_minus_nine_mid_stream_then_restart(dsn: str, lease: bool) -> None:
    account_id, key = asyncio.run(_account(dsn, "50.00"))
    config = gateway_config(dsn, lease)
    with server_process(config) as (url, proc):
        done = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "quick", "messages": [{"role": "user", "content": "hi"}]})
        assert done.status_code == 200
        charged = int(float(done.json()["usage"]["total_cost_usd"]) * 1_000_000 + 0.5)
        asyncio.run(_kill_in_flight(url, key, dsn, account_id, proc, lease))
    with server_process(config) as (url, _proc):  # the restart releases every orphan
        me = httpx.get(url + "/v1/account", headers={"Authorization": f"Bearer {key}"}).json()
        assert me["reserved_usd"] == "0.000000"
    account, entries, open_, violations = asyncio.run(_books(dsn, account_id))
    assert open_ == [] and violations == []
    assert account.balance_micros == 50_000_000 - charged  # the dead requests cost nothing
    kinds = sorted(e.kind for e in entries)
    # one record per released reservation: the four requests', or the one lease they held from
    assert kinds == ["credit", "debit"] + ["unsettled"] * (1 if lease else 4)
    code = subprocess.run(
        [sys.executable, "-m", "tollway", "audit", "--database", dsn], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
    )  # fmt: skip
    assert code.returncode == 0, code.stdout + code.stderr
