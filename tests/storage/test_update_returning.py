"""``update_returning``: an ``UPDATE`` of one row and that row as the update left it.

On PostgreSQL it is ``UPDATE … RETURNING``; on SQLite the ``UPDATE`` and then a ``SELECT`` by
the row's key, because SQLite runs a ``RETURNING`` clause into an ephemeral table of its own
(opened, written, read and closed for every statement). Both must answer alike, in a
transaction and on the database itself, and the money statements of a request (its hold and
the close of its reservation) must not use ``RETURNING`` on SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tollway.storage import open_storage
from tollway.storage.base import NewEntry
from tollway.storage.sqlite import SqliteDatabase

_HOLD = (
    "UPDATE accounts SET reserved_micros = reserved_micros + ?"
    " WHERE id = ? AND balance_micros - reserved_micros >= ?"
)


async def test_the_row_after_the_update_or_none(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await store.create_account("r")
        await store.append(NewEntry(account.id, "credit", 1000))
        db: Any = store.db
        got = await db.update_returning(
            _HOLD, 300, account.id, 300,
            returning="balance_micros, reserved_micros", table="accounts", row_id=account.id,
        )  # fmt: skip
        assert got is not None
        assert (int(got["balance_micros"]), int(got["reserved_micros"])) == (1000, 300)

        async def body(tx: Any) -> Any:
            first = await tx.update_returning(
                _HOLD, 600, account.id, 600,
                returning="reserved_micros", table="accounts", row_id=account.id,
            )  # fmt: skip
            refused = await tx.update_returning(
                _HOLD, 200, account.id, 200,
                returning="reserved_micros", table="accounts", row_id=account.id,
            )  # fmt: skip
            return first, refused

        first, refused = await db.run(body)
        assert first is not None and int(first["reserved_micros"]) == 900
        assert refused is None  # 100 left: nothing changed, no row
        missing = await db.update_returning(
            _HOLD, 1, "acct_none", 1, returning="reserved_micros", table="accounts",
            row_id="acct_none",
        )  # fmt: skip
        assert missing is None
        final = await store.get_account(account.id)
        assert final is not None and final.reserved_micros == 900
    finally:
        await store.close()


@asynccontextmanager
async def _traced_account(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, list[str]]]:
    """A SQLite store, an account with 1,000 µ$ of credit, and the statements run from here
    on (recorded until ``stop_tracing``); the store is closed after."""
    store = await open_storage(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        db = store.db
        assert isinstance(db, SqliteDatabase)
        account = await store.create_account("m")
        await store.append(NewEntry(account.id, "credit", 1000))
        statements: list[str] = []
        db._conn.set_trace_callback(statements.append)
        yield store, account, statements
    finally:
        await store.close()


def _stop_tracing(store: Any) -> None:
    store.db._conn.set_trace_callback(None)


async def test_a_request_s_money_statements_on_sqlite_use_no_returning(tmp_path: Path) -> None:
    async with _traced_account(tmp_path) as (store, account, statements):
        held = await store.reserve(account.id, "req-m", "inst", 400, roomy=(800, 5000))
        assert held.reservation is not None and held.granted_micros == 400  # the roomy refused
        assert (held.balance_micros, held.reserved_micros) == (1000, 400)
        debit = NewEntry(account.id, "debit", -250, request_id="req-m", base_cost_micros=250,
                         platform_fee_micros=0, total_cost_micros=250)  # fmt: skip
        assert await store.settle(held.reservation.id, debit) is not None
        assert await store.settle(held.reservation.id, debit) is None  # not open: no debit
        _stop_tracing(store)
        assert statements and not [s for s in statements if "RETURNING" in s.upper()]
        final = await store.get_account(account.id)
        assert final is not None and (final.balance_micros, final.reserved_micros) == (750, 0)
        assert await store.reserved_mismatches() == []


async def test_a_request_s_hold_and_settlement_read_nothing_back_on_sqlite(tmp_path: Path) -> None:
    """Admission asks for no figures after a successful hold and settlement says what the
    reservation holds: then neither reads a row back (no ``SELECT`` at all), a refusal
    still reports the account's real figures, and the books are the same."""
    async with _traced_account(tmp_path) as (store, account, statements):
        held = await store.reserve(account.id, "req-m", "inst", 300, roomy=(600, 900),
                                   figures=False)  # fmt: skip
        assert held.reservation is not None and held.granted_micros == 600  # the roomy hold
        assert (held.balance_micros, held.reserved_micros) == (0, 0)  # not read
        refused = await store.reserve(account.id, "req-n", "inst", 500, figures=False)
        assert refused.reservation is None
        assert (refused.balance_micros, refused.reserved_micros) == (1000, 600)
        debit = NewEntry(account.id, "debit", -250, request_id="req-m", base_cost_micros=250,
                         platform_fee_micros=0, total_cost_micros=250)  # fmt: skip
        assert await store.settle(held.reservation.id, debit, held_micros=600) is not None
        assert await store.settle(held.reservation.id, debit, held_micros=600) is None
        _stop_tracing(store)
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        # the refusal reads the account once; the second settlement looks for the debit
        assert len(reads) == 2, reads
        final = await store.get_account(account.id)
        assert final is not None and (final.balance_micros, final.reserved_micros) == (750, 0)
        assert await store.balance_mismatches() == []
        assert await store.reserved_mismatches() == []
