"""The small driver interface the SQL store is written against.

Queries are written once with ``?`` placeholders; the PostgreSQL driver rewrites
them to ``$1, $2 …``. Rows come back as plain dicts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar

__all__ = ["Database", "Tx", "dollar_params"]

T = TypeVar("T")


class Tx(Protocol):
    """Statements inside one transaction."""

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None: ...

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def insert(self, sql: str, *args: Any) -> int:
        """``INSERT`` one row into a table whose key is an integer ``id``; that id."""
        ...

    async def update_returning(
        self, sql: str, *args: Any, returning: str, table: str, row_id: Any
    ) -> dict[str, Any] | None:
        """``sql``, an ``UPDATE`` of at most the row of ``table`` whose ``id`` is ``row_id``
        (its ``WHERE`` says ``id = ?``), then that row's ``returning`` columns as the update
        left them, as ``UPDATE … RETURNING`` gives them; None if it changed no row."""
        ...


class Database(Tx, Protocol):
    """A connection pool (or one serialized connection) with write transactions.

    ``transaction()`` takes the database's write lock up front (``BEGIN IMMEDIATE``
    on SQLite); on PostgreSQL it is a normal READ COMMITTED transaction and callers
    rely on row locks taken by conditional ``UPDATE`` statements.
    """

    @property
    def dialect(self) -> Literal["sqlite", "postgres"]: ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    async def run(self, body: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """``body(tx)`` in a write transaction, returning what it returns. The body may
        await only ``tx``'s statements: SQLite queues it and runs it just before its
        group commits (``tollway.storage.sqlite``); PostgreSQL runs it at once."""
        ...

    async def close(self) -> None: ...


_QMARK = re.compile(r"\?")


@functools.lru_cache(maxsize=256)
def dollar_params(sql: str) -> str:
    """Rewrite ``?`` placeholders to PostgreSQL's ``$n`` (our SQL has no ``?`` literals)."""
    counter = iter(range(1, 1000))
    return _QMARK.sub(lambda _m: f"${next(counter)}", sql)
