"""Proof on real servers: two tollway processes (separate ports) on one PostgreSQL and one
Redis hold every limit across both, exactly; the same tests run on one process without
Redis (SQLite). Skipped, with the reason, when PostgreSQL or Redis does not answer."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.test_crash import server_process
from tests.limits.conftest import PRICES, make_key, redis_url
from tests.storage.conftest import PG_URL, _pg
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.limits.rules import Plan
from tollway.limits.store import get_limits
from tollway.storage import open_storage
from tollway.storage.sql_caps import read_caps

pytestmark = pytest.mark.slow
MSG = [{"role": "user", "content": "hi"}]
ADMIN = "admin-" + secrets.token_hex(8)


def config(dsn: str, redis: str | None) -> dict[str, Any]:
    def lorem(tokens: int, rate: int) -> dict[str, Any]:
        return {"deployments": [{"provider": "sim", "model": "lorem", "prices": PRICES,
                                 "options": {"tokens": tokens, "tokens_per_second": rate}}]}

    out: dict[str, Any] = {
        "database": dsn,
        "admin_key": ADMIN,
        "billing": {"instance_heartbeat_seconds": 0.5, "instance_timeout_seconds": 5},
        "tracing": {"enabled": False},
        "providers": {"sim": {"type": "simulated"}},
        "models": {"quick": lorem(20, 0), "stream": lorem(20, 40), "slow": lorem(400, 20)},
        "limits": {"concurrency_lease_seconds": 3},
    }  # fmt: skip
    if redis:
        out["redis"] = redis
    return out


@pytest.fixture(params=["two-postgres-redis", "one-sqlite-local"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Base URLs (two, or the same one twice), the DSN and the server processes."""
    if request.param == "one-sqlite-local":
        dsn = f"sqlite:///{tmp_path / 'tollway.db'}"
        cfg = config(dsn, None)
        make_key(dsn)  # migrate first
        with server_process(cfg) as (url, proc):
            yield {"urls": [url, url], "dsn": dsn, "procs": [proc], "two": False}
        return
    redis = redis_url()
    schema = f"tollway_limits_{os.getpid()}_{secrets.token_hex(4)}"
    problem = asyncio.run(_pg(f"CREATE SCHEMA {schema}"))
    if problem:
        pytest.skip(problem)
    dsn = f"{PG_URL}{'&' if '?' in PG_URL else '?'}search_path={schema}"
    make_key(dsn)  # migrate once, before two processes start
    try:
        with ExitStack() as stack:
            a = stack.enter_context(server_process(config(dsn, redis)))
            b = stack.enter_context(server_process(config(dsn, redis)))
            yield {"urls": [a[0], b[0]], "dsn": dsn, "procs": [a[1], b[1]], "two": True}
    finally:
        asyncio.run(_pg(f"DROP SCHEMA {schema} CASCADE"))


async def _requests(urls: list[str], key: str, n: int, **body: Any) -> list[int]:
    """``n`` concurrent requests, alternating between the instances; their statuses."""
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(i: int) -> int:
            r = await client.post(f"{urls[i % 2]}/v1/chat/completions",
                                  headers={"Authorization": f"Bearer {key}"},
                                  json={"model": "quick", "messages": MSG, "max_tokens": 20,
                                        **body})  # fmt: skip
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_rpm_lets_exactly_n_through(cluster: dict[str, Any]) -> None:
    _, _, key = make_key(cluster["dsn"], account="rpm", key_limits={"rpm": 7})
    statuses = asyncio.run(_requests(cluster["urls"], key, 24))
    assert statuses.count(200) == 7 and statuses.count(429) == 17


def test_tpm_holds_within_one_request(cluster: dict[str, Any]) -> None:
    """Prompt ~7 tokens, 20 output: tpm 100 admits at most what fits plus one request."""
    _, _, key = make_key(cluster["dsn"], account="tpm", key_limits={"tpm": 100})
    statuses = asyncio.run(_requests(cluster["urls"], key, 20))
    ok = statuses.count(200)
    assert 3 <= ok <= 100 // 7  # sequential would be 4; concurrency may take prompts first
    assert statuses.count(429) == 20 - ok


def test_spend_cap_under_100_concurrent_streams(cluster: dict[str, Any]) -> None:
    dsn = cluster["dsn"]
    cap_usd = "0.25"  # each stream reserves ~$0.0088 (max_tokens 20) and costs ~$0.0087
    account_id, key_id, key = make_key(
        dsn, account="capped", key_limits={"spend_cap_usd": cap_usd, "spend_period": "total"}
    )
    statuses = asyncio.run(_requests(cluster["urls"], key, 100, stream=True, max_tokens=20,
                                     model="stream"))  # fmt: skip
    assert statuses.count(200) >= 10 and statuses.count(402) >= 50
    assert set(statuses) <= {200, 402}

    async def books() -> tuple[Any, Any]:
        store = await open_storage(dsn)
        try:
            spec = await get_limits(store.db, "key", key_id)
            caps = Plan(key_id, account_id, spec, type(spec)()).caps(time.time())
            async with store.db.transaction() as tx:
                (state,) = await read_caps(tx, caps)
            return state, await audit(store, BillingConfig())
        finally:
            await store.close()

    deadline = time.monotonic() + 10  # settlement runs once each response has been sent
    while (found := asyncio.run(books()))[0].reserved_micros and time.monotonic() < deadline:
        time.sleep(0.2)
    state, violations = found
    assert state.reserved_micros == 0
    assert 0 < state.spent_micros <= 250_000
    assert not violations


def test_revoked_through_one_is_refused_by_the_other(cluster: dict[str, Any]) -> None:
    a, b = cluster["urls"]
    _, key_id, key = make_key(cluster["dsn"], account="revoke")
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "quick", "messages": MSG}
    assert httpx.post(f"{b}/v1/chat/completions", headers=auth, json=body).status_code == 200
    r = httpx.post(f"{a}/admin/keys/{key_id}/revoke", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200
    revoked = time.monotonic()
    while httpx.post(f"{b}/v1/chat/completions", headers=auth, json=body).status_code != 401:
        assert time.monotonic() - revoked < 2.5, "still accepted 2.5 s after the revocation"
        time.sleep(0.05)


def test_limits_set_through_one_apply_on_the_other(cluster: dict[str, Any]) -> None:
    a, b = cluster["urls"]
    _, key_id, key = make_key(cluster["dsn"], account="runtime")
    r = httpx.post(f"{a}/admin/keys/{key_id}/limits",
                   headers={"Authorization": f"Bearer {ADMIN}"}, json={"models": ["slow"]})
    assert r.status_code == 200
    set_at = time.monotonic()
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "quick", "messages": MSG}
    while httpx.post(f"{b}/v1/chat/completions", headers=auth, json=body).status_code != 403:
        assert time.monotonic() - set_at < 3, "not applied by the other instance within 3 s"
        time.sleep(0.05)


def test_killing_one_mid_stream_leaves_nothing_held(cluster: dict[str, Any]) -> None:
    if not cluster["two"]:
        pytest.skip("needs two instances (one process: see tests/adversarial/test_crash.py)")
    dsn = cluster["dsn"]
    a, b = cluster["urls"]
    account_id, key_id, key = make_key(
        dsn, account="killed",
        key_limits={"max_concurrent": 2, "spend_cap_usd": "5", "spend_period": "total"},
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "slow", "messages": MSG, "stream": True, "max_tokens": 400}

    async def hold_two_then_kill() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            async def stream() -> None:
                try:
                    async with client.stream("POST", f"{a}/v1/chat/completions", headers=auth,
                                             json=body) as r:  # fmt: skip
                        assert r.status_code == 200
                        async for _ in r.aiter_bytes():
                            pass
                except httpx.HTTPError:
                    pass  # the server died under it

            tasks = [asyncio.create_task(stream()) for _ in range(2)]
            await asyncio.sleep(1.0)
            busy = await client.post(f"{b}/v1/chat/completions", headers=auth,
                                     json={**body, "stream": False})  # fmt: skip
            assert busy.status_code == 429 and busy.json()["error"]["code"] == "key_concurrency"
            cluster["procs"][0].send_signal(signal.SIGKILL)
            await asyncio.gather(*tasks)

    asyncio.run(hold_two_then_kill())

    async def held() -> tuple[int, int, list[Any]]:
        store = await open_storage(dsn)
        try:
            spec = await get_limits(store.db, "key", key_id)
            caps = Plan(key_id, account_id, spec, type(spec)()).caps(time.time())
            async with store.db.transaction() as tx:
                (state,) = await read_caps(tx, caps)
            account = await store.get_account(account_id)
            return account.reserved_micros, state.reserved_micros, await store.open_reservations()
        finally:
            await store.close()

    deadline = time.monotonic() + 15
    while True:
        reserved, cap_reserved, open_ = asyncio.run(held())
        if (reserved, cap_reserved, open_) == (0, 0, []) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert (reserved, cap_reserved, open_) == (0, 0, [])  # B's reconciliation released them
    # and the dead instance's concurrency slots expire with their lease (3 s here)
    quick = {"model": "quick", "messages": MSG}
    deadline = time.monotonic() + 8
    chat_url = f"{b}/v1/chat/completions"
    while (r := httpx.post(chat_url, headers=auth, json=quick)).status_code == 429:
        assert time.monotonic() < deadline, "the dead instance's slots were never freed"
        time.sleep(0.2)
    assert r.status_code == 200
