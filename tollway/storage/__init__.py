"""Storage: one interface (``tollway.storage.base``), SQLite and PostgreSQL backends.

``open_storage(dsn)`` connects, applies pending migrations and returns the store.
"""

from __future__ import annotations

from tollway.storage.database import Database
from tollway.storage.migrate import dialect_of, upgrade_database
from tollway.storage.sql import SqlStorage

__all__ = ["connect_database", "open_storage"]


async def connect_database(dsn: str) -> Database:
    """Open the driver for ``sqlite:///PATH`` or ``postgresql://…`` (no migrations). A
    SQLite file this process already has open is shared (``SqliteDatabase.shared``): close
    what this returns once, as ever."""
    if dialect_of(dsn) == "sqlite":
        from tollway.storage.sqlite import SqliteDatabase

        return await SqliteDatabase.shared(dsn)
    from tollway.storage import pg_money  # noqa: F401 (its batches, loaded before requests)
    from tollway.storage.postgres import PostgresDatabase

    return await PostgresDatabase.connect(dsn)


async def open_storage(dsn: str, *, migrate: bool = True) -> SqlStorage:
    """Connect to ``dsn`` and (by default) bring its schema up to date."""
    db = await connect_database(dsn)
    try:
        if migrate:
            await upgrade_database(db)
    except BaseException:
        await db.close()
        raise
    return SqlStorage(db)
