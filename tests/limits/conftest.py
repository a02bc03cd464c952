"""Limits tests share the storage fixtures (both dialects), the async runner and helpers."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from tests.storage.conftest import dsn, pytest_pyfunc_call
from tollway.auth import KeyAuthenticator
from tollway.billing.ledger import create_account
from tollway.limits.store import update_limits
from tollway.storage import open_storage

__all__ = ["dsn", "gateway_config", "make_key", "pytest_pyfunc_call", "redis_url"]

REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
PRICES = {"input_per_mtok": 100, "output_per_mtok": 400}


def redis_url() -> str:
    """The test Redis, or skip with the reason."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"no Redis server answers at {REDIS_URL}: {exc}")
    return REDIS_URL


def gateway_config(dsn: str, **extra: Any) -> dict[str, Any]:
    """Billing on, a simulated provider: ``echo`` (fast) and ``slow`` (streams 2 s)."""
    return {
        "database": dsn,
        "billing": {"key_cache_ttl_seconds": 60},
        "providers": {"sim": {"type": "simulated"}},
        "models": {
            "echo": {"deployments": [{"provider": "sim", "model": "echo", "prices": PRICES}]},
            "slow": {"deployments": [{"provider": "sim", "model": "lorem", "prices": PRICES,
                                      "options": {"tokens": 40, "tokens_per_second": 20}}]},
            "fail": {"deployments": [{"provider": "sim", "model": "error-midstream",
                                      "prices": PRICES}]},
        },
        **extra,
    }  # fmt: skip


def make_key(
    dsn: str, credit: str = "10", *, account: str = "acme",
    key_limits: dict[str, Any] | None = None, account_limits: dict[str, Any] | None = None,
) -> tuple[str, str, str]:
    """(account id, key id, secret), with stored limits set."""

    async def go() -> tuple[str, str, str]:
        store = await open_storage(dsn)
        try:
            acct = await store.get_account(account) or await create_account(
                store, account, credit_usd=credit
            )
            new = await KeyAuthenticator(store).create_key(acct.id)
            if key_limits:
                await update_limits(store.db, "key", new.key.id, key_limits)
            if account_limits:
                await update_limits(store.db, "account", acct.id, account_limits)
        finally:
            await store.close()
        return acct.id, new.key.id, new.secret

    return asyncio.run(go())
