"""Tollway's own store of responses (SQLite or PostgreSQL, migration ``0300``).

Every read and delete names the account: a response is never visible to another
account (requests without authentication share the account ``''``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tollway.api.encode import dumps
from tollway.errors import InvalidRequest, NotFound
from tollway.plugins.contract import Route
from tollway.plugins.docs import Operation
from tollway.storage import connect_database
from tollway.storage.database import Database
from tollway.storage.migrate import upgrade_database

__all__ = ["ResponseStore", "StoredResponse", "stored_routes"]

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


def stored_routes(store_of: Callable[[], Awaitable[ResponseStore]]) -> list[Route]:
    """``GET``/``DELETE /v1/responses/{id}`` and ``GET .../input_items`` (the caller's only)."""

    async def stored(request: dict[str, Any]) -> tuple[str, str, StoredResponse]:
        store = await store_of()
        caller = request.get("auth")
        account = caller.account_id if caller is not None else ""
        response_id = request["path_params"]["response_id"]
        found = await store.get(account, response_id)
        if found is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return account, response_id, found

    async def get(request: dict[str, Any]) -> tuple[int, Any]:
        return 200, (await stored(request))[2][2]

    async def delete(request: dict[str, Any]) -> tuple[int, Any]:
        account, response_id, _ = await stored(request)
        await (await store_of()).delete(account, response_id)
        return 200, {"id": response_id, "object": "response", "deleted": True}

    async def input_items(request: dict[str, Any]) -> tuple[int, Any]:
        """Newest first unless ``order=asc``; ``limit`` (1-100, 20) items ``after`` an id."""
        items = (await stored(request))[2][1]
        query = request["query"]
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("'order' must be asc or desc.", param="order")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
        if order == "desc":
            items = list(reversed(items))
        after = query.get("after")
        if after is not None:
            ids = [i.get("id") for i in items]
            if after not in ids:
                raise InvalidRequest(f"No input item with id '{after}'.", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return 200, {"object": "list", "data": page, "has_more": len(items) > limit,
                     "first_id": page[0]["id"] if page else None,
                     "last_id": page[-1]["id"] if page else None}  # fmt: skip

    def doc(summary: str) -> Operation:
        return Operation(summary=summary, tag="Responses", ok={200: {"type": "object"}},
                         errors=(401, 404))  # fmt: skip

    item = "/v1/responses/{response_id}"
    return [
        Route("GET", item, get, "key", doc("Retrieve a stored response")),
        Route("DELETE", item, delete, "key", doc("Delete a stored response")),
        Route("GET", item + "/input_items", input_items, "key",
              doc("List a stored response's input items")),
    ]  # fmt: skip
