"""Numbered SQL migrations, applied in order and recorded in ``schema_migrations``.

Files live in ``tollway/storage/migrations/<dialect>/NNNN_name.sql`` (dialect
``sqlite`` or ``postgres``). Each file runs in its own transaction together with
the row recording it, so a failed migration leaves nothing half-applied. Other
features add their own files (e.g. ``0100_traces.sql``) in both directories.
Concurrent upgraders are serialized: ``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tollway.storage.database import Database, Tx

__all__ = ["Migration", "dialect_of", "migrations", "upgrade", "upgrade_database"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_ADVISORY_LOCK_ID = 0x746F6C6C  # "toll"


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str  # file stem, e.g. "0001_billing"
    sql: str


def dialect_of(dsn: str) -> Literal["sqlite", "postgres"]:
    """``sqlite:///…`` → sqlite; ``postgresql://…``/``postgres://…`` → postgres."""
    if dsn.startswith("sqlite://"):
        return "sqlite"
    if dsn.startswith(("postgresql://", "postgres://")):
        return "postgres"
    raise ValueError(f"unsupported database {dsn!r}: use sqlite:///PATH or postgresql://…")


def migrations(dialect: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files for a dialect, in version order; duplicates are an error."""
    found: dict[int, Migration] = {}
    for path in sorted((directory / dialect).glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"badly named migration {path.name}: want NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations numbered {version:04d}: {path.name}")
        found[version] = Migration(version, path.stem, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _sqlite_statements(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies stay whole)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise ValueError("migration ends with an incomplete statement")
    return statements


async def _run_script(tx: Tx, dialect: str, sql: str) -> None:
    if dialect == "postgres":
        await tx.execute(sql)  # simple-query protocol runs several statements
        return
    for statement in _sqlite_statements(sql):
        await tx.execute(statement)


_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


async def upgrade_database(db: Database) -> list[str]:
    """Apply every pending migration to an open database; return the names applied."""
    applied: list[str] = []
    async with db.transaction() as tx:
        if db.dialect == "postgres":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})")
        await tx.execute(_CREATE_TABLE)
    for migration in migrations(db.dialect):
        async with db.transaction() as tx:
            if db.dialect == "postgres":
                await tx.execute(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})")
            done = await tx.fetchrow(
                "SELECT version FROM schema_migrations WHERE version = ?", migration.version
            )
            if done:
                continue
            await _run_script(tx, db.dialect, migration.sql)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                migration.version,
                migration.name,
                time.time(),
            )
            applied.append(migration.name)
    return applied


async def upgrade(dsn: str) -> list[str]:
    """Open ``dsn``, apply pending migrations, close; return the names applied."""
    from tollway.storage import connect_database

    db = await connect_database(dsn)
    try:
        return await upgrade_database(db)
    finally:
        await db.close()
