"""Numbered SQL migrations, applied in order and recorded in ``schema_migrations``.

Files live in ``tollway/storage/migrations/<dialect>/NNNN_name.sql`` (dialects
``sqlite`` and ``postgres``); the version is the file name without ``.sql``.
``upgrade(dsn)`` applies the missing ones, each in its own transaction, under a
lock so that several gateway instances starting together apply each file once.
"""

from __future__ import annotations

import re
import sqlite3
import time
from importlib import resources
from pathlib import Path

__all__ = ["dialect_of", "migration_files", "sqlite_path", "upgrade"]

_NAME = re.compile(r"^\d{4}_[A-Za-z0-9_]+\.sql$")
_PG_LOCK_KEY = 7_104_233_001  # pg_advisory_xact_lock key for migrations


def dialect_of(dsn: str) -> str:
    """``sqlite`` or ``postgres`` from a DSN's scheme."""
    if dsn.startswith("sqlite://"):
        return "sqlite"
    if dsn.startswith(("postgresql://", "postgres://")):
        return "postgres"
    raise ValueError(f"unsupported database DSN {dsn.split(':', 1)[0]}:… (sqlite or postgresql)")


def sqlite_path(dsn: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:`` → path."""
    rest = dsn.removeprefix("sqlite://")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ValueError("a SQLite DSN looks like sqlite:///relative.db or sqlite:////abs.db")
    return rest[1:]


def migration_files(dialect: str) -> list[tuple[str, str]]:
    """All ``(version, sql)`` pairs for a dialect, in version order."""
    base = resources.files("tollway.storage") / "migrations" / dialect
    found = [
        (Path(entry.name).stem, entry.read_text(encoding="utf-8"))
        for entry in base.iterdir()
        if _NAME.match(entry.name)
    ]
    return sorted(found)


def _statements(script: str) -> list[str]:
    """Split a SQLite script into complete statements (triggers included)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buf[:60]!r}")
    return out


async def _upgrade_sqlite(dsn: str) -> list[str]:
    import aiosqlite

    applied: list[str] = []
    async with aiosqlite.connect(sqlite_path(dsn), isolation_level=None) as db:
        await db.execute("PRAGMA busy_timeout = 10000")
        await db.execute("PRAGMA journal_mode = WAL")
        for version, sql in migration_files("sqlite"):
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
                )
                cur = await db.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                )
                if await cur.fetchone() is None:
                    for stmt in _statements(sql):
                        await db.execute(stmt)
                    await db.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                        (version, time.time()),
                    )
                    applied.append(version)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
    return applied


async def _upgrade_postgres(dsn: str) -> list[str]:
    import asyncpg

    applied: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        for version, sql in migration_files("postgres"):
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK_KEY)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                )
                done = await conn.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", version
                )
                if done is None:
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        version,
                        time.time(),
                    )
                    applied.append(version)
    finally:
        await conn.close()
    return applied


async def upgrade(dsn: str) -> list[str]:
    """Apply the missing migrations for the DSN's dialect; return the versions applied now."""
    if dialect_of(dsn) == "sqlite":
        return await _upgrade_sqlite(dsn)
    return await _upgrade_postgres(dsn)
