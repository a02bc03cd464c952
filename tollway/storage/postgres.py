"""PostgreSQL driver (asyncpg pool): what several gateway instances share.

Transactions run at READ COMMITTED. Balance reservations are one conditional
``UPDATE accounts … WHERE balance - reserved >= amount``: PostgreSQL locks the
account row and re-checks the condition against the newest committed version,
so concurrent reservations on one account serialize and never overdraw it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import asyncpg

from tollway.storage.database import dollar_params

T = TypeVar("T")

__all__ = ["PostgresDatabase"]


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a connection it takes back: nothing to send.

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``,
    one more round trip for every statement run on the pool. tollway leaves none of that
    behind (no session settings beyond the DSN's, which ``RESET ALL`` keeps, no ``LISTEN``,
    no cursors, advisory locks only at transaction scope), and asyncpg still rolls back a
    transaction left open before it calls this.
    """


class _PgTx:
    """Statements on one acquired connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._conn.fetch(dollar_params(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._conn.fetchrow(dollar_params(sql), *args)
        return dict(row) if row is not None else None

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._conn.execute(dollar_params(sql), *args))

    async def insert(self, sql: str, *args: Any) -> int:
        return int(await self._conn.fetchval(dollar_params(sql + " RETURNING id"), *args))

    async def update_returning(
        self, sql: str, *args: Any, returning: str, table: str, row_id: Any
    ) -> dict[str, Any] | None:
        row = await self._conn.fetchrow(dollar_params(f"{sql} RETURNING {returning}"), *args)
        return dict(row) if row is not None else None


class PostgresDatabase:
    """An asyncpg pool."""

    dialect: Literal["postgres"] = "postgres"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        """Create the pool; extra DSN query parameters become server settings."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         reset=_keep_session)
        return cls(pool)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._pool.fetch(dollar_params(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(dollar_params(sql), *args)
        return dict(row) if row is not None else None

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._pool.execute(dollar_params(sql), *args))

    async def insert(self, sql: str, *args: Any) -> int:
        return int(await self._pool.fetchval(dollar_params(sql + " RETURNING id"), *args))

    async def update_returning(
        self, sql: str, *args: Any, returning: str, table: str, row_id: Any
    ) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(dollar_params(f"{sql} RETURNING {returning}"), *args)
        return dict(row) if row is not None else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgTx]:
        """One connection, one transaction; rolled back on any exception."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgTx(conn)

    async def run(self, body: Callable[[_PgTx], Coroutine[Any, Any, T]]) -> T:
        """``body(tx)`` in one transaction (``Database.run``)."""
        async with self.transaction() as tx:
            return await body(tx)

    async def close(self) -> None:
        await self._pool.close()
