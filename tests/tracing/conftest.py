"""Fixtures: a trace DSN on SQLite and on PostgreSQL (own schema per test), contexts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tollway.chunks import Usage
from tollway.config import DeploymentConfig
from tollway.context import Attempt, RequestContext
from tollway.providers.base import ChatRequest

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
RUN = uuid.uuid4().hex[:8]


def _pg_available() -> str | None:
    """None if PostgreSQL answers, else the reason it does not."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed"

    async def probe() -> None:
        conn = await asyncpg.connect(PG_BASE, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        return f"no PostgreSQL server answers at 127.0.0.1:5432 ({exc.__class__.__name__}: {exc})"
    return None


_PG_SKIP: list[str | None] = []


def pg_skip_reason() -> str | None:
    if not _PG_SKIP:
        _PG_SKIP.append(_pg_available())
    return _PG_SKIP[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty trace database DSN."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/traces.db"
        return
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    import asyncpg

    schema = f"tr_{RUN}_{uuid.uuid4().hex[:8]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_BASE)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_BASE}?search_path={schema}"
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


DEP_A = DeploymentConfig(provider="sim", model="sim-a", name="sim-a")
DEP_B = DeploymentConfig(provider="sim", model="sim-b", name="sim-b")


def make_ctx(
    request_id: str = "req_1",
    *,
    account_id: str | None = "acct_1",
    model: str = "gpt-test",
    status: int = 200,
    stream: bool = True,
    received_at: float | None = None,
    fallback: bool = False,
    completion_tokens: int = 11,
) -> RequestContext:
    """A finished context as settlement would see it."""
    ctx = RequestContext(request_id=request_id)
    if received_at is not None:
        ctx.received_at = received_at
    ctx.account_id = account_id
    ctx.key_id = "key_abc"
    ctx.requested_model = model
    ctx.request = ChatRequest(
        body={"model": model, "messages": [], "temperature": 0.2, "max_tokens": 50},
        model=model, stream=stream, include_usage=True,
        messages=[{"role": "user", "content": "hi"}],
    )
    if fallback:
        ctx.attempts.append(Attempt("sim-b", "error", 503, "overloaded", 12.5))
    ctx.attempts.append(Attempt("sim-a", "ok", 200, None, 80.0))
    ctx.deployment = DEP_A
    ctx.served_model = "sim-a-2024"
    ctx.timings.update(
        {"admitted": 0.002, "upstream_connected": 0.03, "first_token": 0.1, "last_token": 0.6,
         "finished": 0.61}
    )
    ctx.usage = Usage(
        prompt_tokens=7, completion_tokens=completion_tokens,
        cost={"base_cost_usd": "0.0001", "platform_fee_usd": "0.00001",
              "total_cost_usd": "0.00011"},
    )
    ctx.finish_reasons = {0: "stop"}
    ctx.status = status
    if status >= 400:
        ctx.error = "upstream failed"
        ctx.error_code = "upstream_unavailable"
    return ctx
