"""Billing's connection and the trace writer's share one SQLite file in one process:
they take turns through the file's write gate, so a reservation never fails busy and
sleeps behind a trace batch (it used to back off for up to 50 ms at a time)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.tracing.conftest import make_ctx
from tollway.storage import open_storage
from tollway.storage.base import NewEntry
from tollway.storage.sqlite import SqliteDatabase
from tollway.tracing.record import build_record
from tollway.tracing.store import open_trace_store, record_to_row


def test_money_and_traces_take_turns_without_busy_waits(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'shared.db'}"

    async def main() -> None:
        store = await open_storage(dsn)
        traces = await open_trace_store(dsn)
        try:
            db = store.db
            assert isinstance(db, SqliteDatabase)
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
        finally:
            await traces.close()
            await store.close()

    asyncio.run(main())
