"""Billing's connection and the trace writer's share one SQLite file in one process. The
trace writer writes through billing's connection when the process has it open (its rows
join billing's group commits); without it, the writer's own connection takes turns with
the others through the file's write gate, so a reservation never fails busy and sleeps
behind a trace batch (it used to back off for up to 50 ms at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.tracing.conftest import make_ctx
from tollway.storage import connect_database, open_storage
from tollway.storage import sqlite as sqlite_module
from tollway.storage.base import NewEntry
from tollway.storage.sqlite import SqliteDatabase, open_database
from tollway.tracing.record import build_record
from tollway.tracing.store import open_trace_store, record_to_row


@contextlib.asynccontextmanager
async def _money_and_traces(path: Path) -> AsyncIterator[tuple[Any, SqliteDatabase, Any]]:
    """Billing's store and the trace store on one SQLite file, and the store's database."""
    dsn = f"sqlite:///{path}"
    store = await open_storage(dsn)
    traces = await open_trace_store(dsn)
    try:
        db = store.db
        assert isinstance(db, SqliteDatabase)
        yield store, db, traces
    finally:
        await traces.close()
        await store.close()


@pytest.mark.parametrize("writer", ["shared connection", "own connection"])
def test_money_and_traces_take_turns_without_busy_waits(tmp_path: Path, writer: str) -> None:
    async def main() -> None:
        async with _money_and_traces(tmp_path / "shared.db") as (store, db, traces):
            if writer == "own connection":  # as in a process that has no billing connection
                sqlite_module._OPEN[asyncio.get_running_loop()].clear()
            assert (open_database(str(tmp_path / "shared.db")) is db) == (
                writer == "shared connection")
            account = await store.create_account("gate")
            await store.append(NewEntry(account.id, "credit", 10**9))
            rows = [record_to_row(build_record(make_ctx(f"req_g{i:05d}"))) for i in range(10_000)]

            async def trace_batches() -> None:
                for start in range(0, len(rows), 1000):
                    await traces.insert_many(rows[start:start + 1000])

            async def one(i: int) -> None:
                held = await store.reserve(account.id, f"req_m{i}", "inst", 1000)
                assert held.reservation is not None
                debit = NewEntry(account.id, "debit", -400, request_id=f"req_m{i}",
                                 base_cost_micros=400, platform_fee_micros=0,
                                 total_cost_micros=400)  # fmt: skip
                assert await store.settle(held.reservation.id, debit) is not None

            async def money() -> None:
                for batch in range(20):
                    await asyncio.sleep(0.003)  # the trace writer's thread takes the file
                    await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))

            await asyncio.gather(trace_batches(), money())
            assert db.busy_waits == 0
            got = await store.get_account(account.id)
            assert got is not None and (got.balance_micros, got.reserved_micros) == (
                10**9 - 200 * 400, 0)
            assert await traces.get("req_g09999", None) is not None

    asyncio.run(main())


def test_traces_are_written_in_the_shared_connections_group(tmp_path: Path) -> None:
    """With billing's connection open, a trace batch is that connection's work (its rows
    join its group commit), not the trace writer thread's."""
    async def main() -> None:
        async with _money_and_traces(tmp_path / "one.db") as (store, db, traces):
            rows = [record_to_row(build_record(make_ctx(f"req_s{i:03d}"))) for i in range(150)]
            before = db._conn.total_changes
            account = await store.create_account("one")
            held, _ = await asyncio.gather(
                store.reserve(account.id, "req_money", "inst", 0), traces.insert_many(rows))
            assert held.reservation is not None
            assert db._conn.total_changes - before >= 150 + 2
            assert await traces.get("req_s149", None) is not None

    asyncio.run(main())


def test_closing_commits_the_open_group_and_fails_what_comes_after(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'close.db'}"

    async def credit(tx: object, account_id: str) -> int:
        await tx.execute(  # type: ignore[attr-defined]
            "UPDATE accounts SET balance_micros = balance_micros + 5 WHERE id = ?", account_id)
        return 5

    async def main() -> None:
        store = await open_storage(dsn)
        account = await store.create_account("c")
        db = store.db
        assert isinstance(db, SqliteDatabase)
        pending = asyncio.ensure_future(db.run(lambda tx: credit(tx, account.id)))
        await asyncio.sleep(0)  # its group is open, its commit some iterations away
        assert db._group is not None
        await store.close()
        assert await asyncio.wait_for(pending, 5) == 5
        assert open_database(str(tmp_path / "close.db")) is None
        with pytest.raises(sqlite3.Error):  # a clear error, not a wait for ever
            await asyncio.wait_for(db.run(lambda tx: credit(tx, account.id)), 5)
        again = await open_storage(dsn)
        try:
            got = await again.get_account(account.id)
            assert got is not None and got.balance_micros == 5
        finally:
            await again.close()

    asyncio.run(main())


def test_one_connection_per_file_for_every_component(tmp_path: Path) -> None:
    """Billing, limits, the dashboard, the Responses store and migrations each open the
    file through ``connect_database``/``open_storage``: they get the one connection the
    process has open on it (one group commit, nobody waiting for the write gate), and it
    closes with the last of them."""
    dsn = f"sqlite:///{tmp_path / 'one.db'}"

    async def main() -> None:
        billing = await open_storage(dsn)
        limits = await open_storage(dsn)
        assert limits.db is billing.db
        migrations = await connect_database(f"sqlite:///{tmp_path}/../{tmp_path.name}/one.db")
        assert migrations is billing.db  # the same file by another path
        await migrations.close()
        account = await billing.create_account("shared")
        await billing.close()  # limits still holds it: it stays open for limits
        await limits.append(NewEntry(account.id, "credit", 7))
        got = await limits.get_account(account.id)
        assert got is not None and got.balance_micros == 7
        await limits.close()  # the last holder: now it closes
        assert open_database(str(tmp_path / "one.db")) is None
        with pytest.raises(sqlite3.Error):
            await limits.get_account(account.id)
        again = await open_storage(dsn)  # a fresh connection, as after a restart
        try:
            assert again.db is not billing.db
            got = await again.get_account(account.id)
            assert got is not None and got.balance_micros == 7
        finally:
            await again.close()

    asyncio.run(main())


def test_the_trace_writer_keeps_no_connection_beside_the_shared_one(tmp_path: Path) -> None:
    """With the process's connection open, traces go through it: the writer's own
    connection is not opened to write, and a prune closes it again afterwards."""
    async def main() -> None:
        async with _money_and_traces(tmp_path / "lean.db") as (_store, _db, traces):
            rows = [record_to_row(build_record(make_ctx(f"req_l{i:03d}"))) for i in range(30)]
            await traces.insert_many(rows)
            assert traces._w._conn is None
            assert await traces.prune(time.time() + 1) == 30
            assert traces._w._conn is None
            assert await traces.get("req_l000", None) is None

    asyncio.run(main())


def test_a_prune_goes_through_the_shared_connection_in_small_transactions(
    tmp_path: Path,
) -> None:
    """With billing's connection open, the trace store prunes through it as it inserts: in
    transactions of at most ``_SHARED_DELETE_BATCH`` rows that join its group commits, and
    never from the writer's thread (which held the file's write gate while every one of
    its steps waited for the GIL: the money transactions behind the gate waited too)."""

    async def main() -> None:
        async with _money_and_traces(tmp_path / "prune.db") as (store, db, traces):
            assert open_database(str(tmp_path / "prune.db")) is db
            now = time.time()
            old = [record_to_row(build_record(make_ctx(f"req_o{i:05d}", received_at=now - 9e5)))
                   for i in range(1234)]  # fmt: skip
            new = [record_to_row(build_record(make_ctx(f"req_n{i:05d}"))) for i in range(10)]
            await traces.insert_many(old + new)
            statements: list[str] = []
            db._conn.set_trace_callback(statements.append)
            try:
                assert await traces.prune(now - 8e5) == 1234
            finally:
                db._conn.set_trace_callback(None)
            deletes = [s for s in statements if s.startswith("DELETE FROM traces")]
            assert len(deletes) == 3  # 500 + 500 + 234: each its own transaction
            assert traces._w._pool._threads == set()  # the writer's thread never started
            assert await traces.get("req_o00000", None) is None
            assert await traces.get("req_n00009", None) is not None
            assert await traces.prune(now - 8e5) == 0

    asyncio.run(main())
