"""Database fixtures: every storage and billing test runs on SQLite and on PostgreSQL.

``dsn`` gives a fresh SQLite file, or a fresh PostgreSQL schema (dropped after the
test) on the server at 127.0.0.1:5432; PostgreSQL runs skip only when no server
answers. Coroutine tests run in their own event loop via ``pytest_pyfunc_call``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("TOLLWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

__all__ = ["PG_URL", "dsn", "pytest_pyfunc_call"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests with asyncio.run."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


async def _pg(sql: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_URL, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL server answers at {PG_URL}: {exc}"
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A DSN to an empty database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tollway.db'}"
        return
    schema = f"tollway_test_{os.getpid()}_{secrets.token_hex(4)}"
    problem = asyncio.run(_pg(f"CREATE SCHEMA {schema}"))
    if problem:
        pytest.skip(problem)
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}search_path={schema}"
    asyncio.run(_pg(f"DROP SCHEMA {schema} CASCADE"))
