"""Savepoints on SQLite only where a body's failure needs one.

A savepoint copies every page its bodies change into the statement journal. The bodies
queued for a group run under one savepoint for them all, or none when nothing came before
them in the transaction (it is then theirs); an early body (``run_early``) first in its
group runs without one. When such a body fails, the transaction (or the batch's savepoint)
is rolled back: queued bodies then run again with a savepoint each, so that only the failed
one's changes go; a failed early body ends its group and the bodies queued meanwhile get
another. These tests hold every path to what a savepoint a body promised: each body all or
nothing, in order, the others unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tollway.storage import open_storage
from tollway.storage.sqlite import SqliteDatabase


@contextlib.asynccontextmanager
async def _account(path: Path) -> AsyncIterator[tuple[Any, SqliteDatabase, str, list[str]]]:
    """A SQLite store, its database, a new account and the statements run from now on."""
    store = await open_storage(f"sqlite:///{path}")
    try:
        db = store.db
        assert isinstance(db, SqliteDatabase)
        account = await store.create_account("clean")
        statements: list[str] = []
        db._conn.set_trace_callback(statements.append)
        yield store, db, account.id, statements
    finally:
        await store.close()


def _credit(account_id: str, amount: int, fail: bool = False) -> Any:
    async def body(tx: Any) -> int:
        await tx.execute(
            "UPDATE accounts SET balance_micros = balance_micros + ? WHERE id = ?",
            amount, account_id,
        )  # fmt: skip
        if fail:
            raise ValueError("this body fails after its update")
        row = await tx.fetchrow("SELECT balance_micros FROM accounts WHERE id = ?", account_id)
        return int(row["balance_micros"])

    return body


async def _balance(store: Any, account_id: str) -> int:
    got = await store.get_account(account_id)
    assert got is not None
    return int(got.balance_micros)


def _savepoints(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))]


async def test_a_lone_body_runs_without_a_savepoint(tmp_path: Path) -> None:
    async with _account(tmp_path / "a.db") as (store, db, account_id, statements):
        assert await db.run(_credit(account_id, 5)) == 5
        assert _savepoints(statements) == []
        assert await _balance(store, account_id) == 5


async def test_queued_bodies_run_together_without_savepoints(tmp_path: Path) -> None:
    async with _account(tmp_path / "b.db") as (store, db, account_id, statements):
        results = await asyncio.gather(*(db.run(_credit(account_id, 10**i)) for i in range(3)))
        assert results == [1, 11, 111]
        assert _savepoints(statements) == []
        assert await _balance(store, account_id) == 111


async def test_queued_bodies_after_an_early_one_share_one_savepoint(tmp_path: Path) -> None:
    async with _account(tmp_path / "s.db") as (store, db, account_id, statements):
        early = db.run_early(_credit(account_id, 1))
        assert early is not None
        results = await asyncio.gather(*(db.run(_credit(account_id, 10**i)) for i in (1, 2, 3)))
        assert results == [11, 111, 1111] and await early[1] == 1
        assert _savepoints(statements) == ["SAVEPOINT batch", "RELEASE batch"]
        assert await _balance(store, account_id) == 1111


async def test_a_failing_first_body_leaves_nothing_and_the_others_commit(tmp_path: Path) -> None:
    async with _account(tmp_path / "c.db") as (store, db, account_id, statements):
        results = await asyncio.gather(
            db.run(_credit(account_id, 1000, fail=True)),
            db.run(_credit(account_id, 3)),
            db.run(_credit(account_id, 40)),
            return_exceptions=True,
        )
        assert isinstance(results[0], ValueError)
        assert results[1:] == [3, 43]  # the failed body's update is gone before they run
        # the transaction rolled back and begun again, then a savepoint a body
        assert _savepoints(statements) == [
            "ROLLBACK", "SAVEPOINT queued", "ROLLBACK TO queued", "RELEASE queued",
            *["SAVEPOINT queued", "RELEASE queued"] * 2,
        ]  # fmt: skip
        assert await _balance(store, account_id) == 43


async def test_a_failing_body_after_an_early_one_leaves_the_early_ones_changes(
    tmp_path: Path,
) -> None:
    async with _account(tmp_path / "g.db") as (store, db, account_id, statements):
        early = db.run_early(_credit(account_id, 1))
        assert early is not None
        results = await asyncio.gather(
            db.run(_credit(account_id, 20)),
            db.run(_credit(account_id, 1000, fail=True)),
            db.run(_credit(account_id, 300)),
            return_exceptions=True,
        )
        assert results[0] == 21 and isinstance(results[1], ValueError) and results[2] == 321
        assert await early[1] == 1
        assert _savepoints(statements)[:3] == [
            "SAVEPOINT batch", "ROLLBACK TO batch", "RELEASE batch",
        ]  # fmt: skip
        assert await _balance(store, account_id) == 321


async def test_an_early_body_that_fails_first_ends_its_group(tmp_path: Path) -> None:
    async with _account(tmp_path / "d.db") as (store, db, account_id, statements):
        with pytest.raises(ValueError):
            db.run_early(_credit(account_id, 1000, fail=True))
        assert db._group is None and not db._conn.in_transaction  # rolled back, ended
        assert _savepoints(statements) == ["ROLLBACK"]
        ran = db.run_early(_credit(account_id, 7))  # a new group, first again
        assert ran is not None and ran[0] == 7
        assert await ran[1] == 7
        assert await _balance(store, account_id) == 7


async def test_an_early_body_after_another_keeps_its_savepoint(tmp_path: Path) -> None:
    async with _account(tmp_path / "e.db") as (store, db, account_id, statements):
        first = db.run_early(_credit(account_id, 1))
        assert first is not None
        with pytest.raises(ValueError):
            db.run_early(_credit(account_id, 1000, fail=True))
        second = db.run_early(_credit(account_id, 20))
        assert second is not None and second[0] == 21
        assert await first[1] == 1 and await second[1] == 21
        assert _savepoints(statements) == [
            "SAVEPOINT early", "ROLLBACK TO early", "RELEASE early",
            "SAVEPOINT early", "RELEASE early",
        ]  # fmt: skip
        assert await _balance(store, account_id) == 21


async def test_bodies_queued_while_an_early_first_body_fails_still_commit(tmp_path: Path) -> None:
    async with _account(tmp_path / "f.db") as (store, db, account_id, _statements):
        assert db._open_inline()  # a group that has written nothing yet
        queued = asyncio.ensure_future(db.run(_credit(account_id, 9)))
        await asyncio.sleep(0)  # queued for that group
        with pytest.raises(ValueError):
            db.run_early(_credit(account_id, 1000, fail=True))
        assert await asyncio.wait_for(queued, 5) == 9  # in a group of its own
        assert await _balance(store, account_id) == 9
