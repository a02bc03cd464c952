"""Numbered migrations: applied in order, recorded, idempotent; WAL on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.storage import connect_database, open_storage
from tollway.storage.base import NewEntry
from tollway.storage.database import dollar_params
from tollway.storage.migrate import _sqlite_statements, migrations, upgrade


async def test_upgrade_is_idempotent(dsn: str) -> None:
    first = await upgrade(dsn)
    assert first == [
        m.name for m in migrations("sqlite" if dsn.startswith("sqlite") else "postgres")
    ]
    assert "0001_billing" in first
    assert await upgrade(dsn) == []
    db = await connect_database(dsn)
    try:
        rows = await db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    finally:
        await db.close()
    assert [r["name"] for r in rows] == first


async def test_open_storage_migrates_and_ledger_is_append_only(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await store.create_account("a")
        await store.db.execute(
            "INSERT INTO ledger_entries (account_id, kind, amount_micros, partial, created_at)"
            " VALUES (?, 'credit', 5, ?, 0.0)",
            account.id,
            False,
        )
        with pytest.raises(Exception, match="append-only"):
            await store.db.execute("UPDATE ledger_entries SET amount_micros = 6")
        with pytest.raises(Exception, match="append-only"):
            await store.db.execute("DELETE FROM ledger_entries")
    finally:
        await store.close()


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    db = await connect_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        row = await db.fetchrow("PRAGMA journal_mode")
        assert row is not None and next(iter(row.values())) == "wal"
        # the group commit's savepoints journal in memory, not in a temporary file
        row = await db.fetchrow("PRAGMA temp_store")
        assert row is not None and next(iter(row.values())) == 2  # MEMORY
    finally:
        await db.close()


def test_migration_files_are_parallel_and_well_named() -> None:
    sqlite = [m.name for m in migrations("sqlite")]
    postgres = [m.name for m in migrations("postgres")]
    assert sqlite == postgres
    assert [m.version for m in migrations("sqlite")] == sorted(
        {m.version for m in migrations("sqlite")}
    )


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "sqlite" / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="NNNN_name.sql"):
        migrations("sqlite", tmp_path)


def test_sqlite_splitter_keeps_trigger_bodies_whole() -> None:
    script = (
        "-- c\nCREATE TABLE t (a INT);\nCREATE TRIGGER x BEFORE DELETE ON t\nBEGIN\n"
        "    SELECT RAISE(ABORT, 'no');\nEND;\n"
    )
    parts = _sqlite_statements(script)
    assert len(parts) == 2 and parts[1].endswith("END;")


def test_dollar_params() -> None:
    assert dollar_params("a = ? AND b = ?") == "a = $1 AND b = $2"


async def test_money_migration_keeps_a_live_ledger(dsn: str) -> None:
    """0010 on a database with entries: rows and ids kept, still append-only, new kind ok."""
    from tollway.storage.migrate import _CREATE_TABLE, _run_script

    dialect = "sqlite" if dsn.startswith("sqlite") else "postgres"
    first = migrations(dialect)[0]
    db = await connect_database(dsn)
    try:
        async with db.transaction() as tx:  # a database as 0001 left it, with entries
            await _run_script(tx, dialect, first.sql)
            await tx.execute(_CREATE_TABLE)
            await tx.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", 1, first.name)
            await tx.execute("INSERT INTO accounts (id, name, created_at, updated_at,"
                             " balance_micros) VALUES ('a', 'a', 0, 0, 7)")  # fmt: skip
            for amount in (10, -3):
                await tx.execute(
                    "INSERT INTO ledger_entries (account_id, kind, amount_micros, request_id,"
                    " partial, created_at) VALUES ('a', ?, ?, ?, ?, 0)",
                    "credit" if amount > 0 else "debit", amount, f"r{amount}", False,
                )  # fmt: skip
        before = await db.fetch("SELECT id, kind, amount_micros FROM ledger_entries ORDER BY id")
    finally:
        await db.close()
    assert "0010_money" in await upgrade(dsn)
    store = await open_storage(dsn)
    try:
        after = await store.db.fetch(
            "SELECT id, kind, amount_micros FROM ledger_entries ORDER BY id"
        )
        assert after == before
        with pytest.raises(Exception, match="append-only"):
            await store.db.execute("UPDATE ledger_entries SET amount_micros = 6")
        with pytest.raises(Exception, match="append-only"):
            await store.db.execute("DELETE FROM ledger_entries")
        overage = NewEntry("a", "provider_overage", 0, request_id="r-3", base_cost_micros=2,
                           platform_fee_micros=0, total_cost_micros=2, output_tokens=9)  # fmt: skip
        entry = await store.append(overage)
        assert entry.id > before[-1]["id"]  # ids keep growing past the copied rows
        assert (await store.entries("a"))[0].entry == overage
        with pytest.raises(Exception, match="(?i)unique"):
            await store.append(overage)  # one overage line per request
    finally:
        await store.close()


async def test_checks_without_lists_keep_a_live_database(tmp_path: Path) -> None:
    """0500 on a SQLite database with reservations and entries: every row, id, state and the
    ledger's sequence kept; the constraints still refuse what they refused; and a billed
    request's writes no longer build an ephemeral index of a CHECK's list."""
    from tollway.storage.migrate import _CREATE_TABLE, _run_script

    dsn = f"sqlite:///{tmp_path / 'c.db'}"
    earlier = [m for m in migrations("sqlite") if m.version < 500]
    db = await connect_database(dsn)
    try:
        async with db.transaction() as tx:  # a database as 0400 left it
            await tx.execute(_CREATE_TABLE)
            for m in earlier:
                await _run_script(tx, "sqlite", m.sql)
                await tx.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)",
                                 m.version, m.name)  # fmt: skip
    finally:
        await db.close()
    db = await connect_database(dsn)
    try:
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO accounts (id, name, created_at, updated_at, balance_micros,"
                " reserved_micros) VALUES ('a', 'a', 0, 0, 10, 4)"
            )
            for i, state in enumerate(("open", "settled", "released")):
                await tx.execute(
                    "INSERT INTO reservations (id, request_id, account_id, instance_id,"
                    " amount_micros, state, created_at) VALUES (?, ?, 'a', 'i', 4, ?, ?)",
                    f"res_{i}", f"r{i}", state, float(i),
                )  # fmt: skip
            for amount in (12, -2):
                await tx.insert(
                    "INSERT INTO ledger_entries (account_id, kind, amount_micros, request_id,"
                    " partial, created_at) VALUES ('a', ?, ?, ?, 0, 0)",
                    "credit" if amount > 0 else "debit", amount, f"r{amount}",
                )  # fmt: skip
            # a sequence ahead of the largest id (an id handed out, its row rolled back
            # by an older SQLite, or a restored backup): ids must go on past it
            await tx.execute("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'ledger_entries'")
        reservations = await db.fetch("SELECT * FROM reservations ORDER BY id")
        entries = await db.fetch("SELECT * FROM ledger_entries ORDER BY id")
    finally:
        await db.close()
    assert await upgrade(dsn) == ["0500_checks_without_lists"]
    store = await open_storage(dsn)
    try:
        db = store.db
        assert await db.fetch("SELECT * FROM reservations ORDER BY id") == reservations
        assert await db.fetch("SELECT * FROM ledger_entries ORDER BY id") == entries
        opened = await store.open_reservations()
        assert [r.id for r in opened] == ["res_0"]
        with pytest.raises(Exception, match="CHECK"):
            await db.execute("UPDATE reservations SET state = 'gone' WHERE id = 'res_0'")
        with pytest.raises(Exception, match="CHECK"):
            await db.execute("INSERT INTO ledger_entries (account_id, kind, amount_micros,"
                             " partial, created_at) VALUES ('a', 'gift', 1, 0, 0)")  # fmt: skip
        with pytest.raises(Exception, match="append-only"):
            await db.execute("DELETE FROM ledger_entries")
        with pytest.raises(Exception, match="(?i)unique"):
            await db.execute("INSERT INTO ledger_entries (account_id, kind, amount_micros,"
                             " request_id, partial, created_at)"
                             " VALUES ('a', 'debit', -1, 'r-2', 0, 0)")  # fmt: skip
        entry = await store.append(NewEntry("a", "credit", 5))
        assert entry.id == 41
        indexes = {r["name"] for r in await db.fetch(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}  # fmt: skip
        assert {"reservations_open", "ledger_account", "ledger_one_debit",
                "ledger_one_overage", "ledger_time", "ledger_account_time",
                "ledger_account_kind"} <= indexes  # fmt: skip
        from tollway.storage.ledger_columns import ENTRY_COLUMNS, ENTRY_PLACEHOLDERS

        writes = [
            f"INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES ({ENTRY_PLACEHOLDERS})",
            "INSERT INTO reservations (id, request_id, account_id, instance_id,"
            " amount_micros, state, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)",
            "UPDATE reservations SET state = ?, closed_at = ? WHERE id = ? AND state = 'open'",
        ]
        for sql in writes:
            program = await db.fetch(f"EXPLAIN {sql}", *[None] * sql.count("?"))
            assert not [op for op in program if op["opcode"] == "OpenEphemeral"], sql
    finally:
        await store.close()
