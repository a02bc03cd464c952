"""Tollway's own store of responses (SQLite or PostgreSQL, migration ``0300``).

Every read and delete names the account: a response is never visible to another
account (requests without authentication share the account ``''``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tollway.api.sse import dumps
from tollway.storage import connect_database
from tollway.storage.database import Database
from tollway.storage.migrate import upgrade_database

__all__ = ["ResponseStore", "StoredResponse"]

StoredResponse = tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]
"""(context items, input items, the response object)"""


class ResponseStore:
    """Responses by ``(account, id)``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(cls, dsn: str) -> ResponseStore:
        db = await connect_database(dsn)
        try:
            await upgrade_database(db)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def save(self, account: str, response: dict[str, Any], context: list[dict[str, Any]],
                   items: list[dict[str, Any]]) -> None:  # fmt: skip
        await self._db.execute(
            "INSERT INTO responses (id, account_id, created_at, input, context, response) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            response["id"], account, time.time(), dumps(items).decode(),
            dumps(context).decode(), dumps(response).decode(),
        )  # fmt: skip

    async def get(self, account: str, response_id: str) -> StoredResponse | None:
        row = await self._db.fetchrow(
            "SELECT input, context, response FROM responses WHERE id = ? AND account_id = ?",
            response_id, account,
        )  # fmt: skip
        if row is None:
            return None
        return (orjson.loads(row["context"]), orjson.loads(row["input"]),
                orjson.loads(row["response"]))  # fmt: skip

    async def delete(self, account: str, response_id: str) -> bool:
        count = await self._db.execute(
            "DELETE FROM responses WHERE id = ? AND account_id = ?", response_id, account
        )
        return count > 0
