"""SQLite driver (aiosqlite, WAL): the embedded default.

One connection per process, serialized by an asyncio lock so that coroutines
never interleave statements inside each other's transactions. Write transactions
start with ``BEGIN IMMEDIATE``, which takes SQLite's write lock at once, so a
read-check-write sequence (a balance reservation) cannot race with another
process sharing the file; ``busy_timeout`` makes the others wait instead of fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

__all__ = ["SqliteDatabase", "sqlite_path"]

BUSY_TIMEOUT_MS = 30_000


def sqlite_path(dsn: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:`` → path."""
    if not dsn.startswith("sqlite://"):
        raise ValueError(f"not a sqlite DSN: {dsn!r}")
    rest = dsn.removeprefix("sqlite://")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    return rest.removeprefix("/") if rest.startswith("/") else rest


class _SqliteTx:
    """Statements on the locked connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._conn.execute(sql, args) as cur:
            rows = await cur.fetchall()
            names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._conn.execute(sql, args) as cur:
            return cur.rowcount


class SqliteDatabase:
    """An aiosqlite connection in WAL mode with serialized access."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._tx = _SqliteTx(conn)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, dsn: str) -> SqliteDatabase:
        """Open (creating the file and its directory if needed) and set pragmas."""
        path = sqlite_path(dsn)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        return cls(conn)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._lock:
            return await self._tx.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self._lock:
            return await self._tx.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._tx.execute(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception or cancellation."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
            except BaseException:
                await asyncio.shield(self._conn.execute("ROLLBACK"))
                raise
            await asyncio.shield(self._conn.execute("COMMIT"))

    async def close(self) -> None:
        await self._conn.close()
