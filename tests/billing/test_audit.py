"""The audit names each broken invariant."""

from __future__ import annotations

from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.storage import open_storage
from tollway.storage.base import NewEntry


async def test_audit_finds_tampering(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        config = BillingConfig()
        assert await audit(store, config) == []
        await store.db.execute(
            "UPDATE accounts SET balance_micros = balance_micros + 1, reserved_micros = 7"
        )
        await store.append(NewEntry(account.id, "debit", -5, request_id="r", base_cost_micros=1,
                                    platform_fee_micros=1, total_cost_micros=5))  # fmt: skip
        codes = sorted(v.code for v in await audit(store, config))
        assert codes == ["balance", "debit_arithmetic", "reserved"]
        text = " ".join(v.message for v in await audit(store, config))
        assert "differs from the sum of its entries" in text
    finally:
        await store.close()


async def test_audit_reports_values_no_writer_of_ours_stores(dsn: str) -> None:
    """REAL, huge and NULL values left by another writer are reported, never a crash."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        other = await create_account(store, "b", credit_usd="2")
        big = 2**63 - 1
        insert = (
            "INSERT INTO ledger_entries (account_id, kind, amount_micros, request_id,"
            " base_cost_micros, platform_fee_micros, total_cost_micros, partial, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"
        )
        # two huge entries: their sum overflows 64 bits (SQLite's SUM raised, PostgreSQL's
        # CAST to BIGINT raised)
        await store.db.execute(insert, account.id, "credit", big, None, None, None, None, False)
        await store.db.execute(insert, account.id, "credit", big, None, None, None, None, False)
        # a debit whose total is the most negative BIGINT (negating it overflowed) and one
        # with a NULL base cost (compared as NULL, so it was never reported)
        low = -(2**63)
        await store.db.execute(insert, other.id, "debit", 5, "r1", 1, 1, low, False)
        await store.db.execute(insert, other.id, "debit", -5, "r2", None, 1, 5, False)
        if store.dialect == "sqlite":
            await store.db.execute(
                "UPDATE accounts SET balance_micros = 1e308 WHERE id = ?", other.id
            )
            await store.db.execute(
                "UPDATE accounts SET fixed_fee_micros = 'lots' WHERE id = ?", account.id
            )
        violations = await audit(store, BillingConfig())
        codes = {v.code for v in violations}
        assert {"bad_value", "balance", "debit_arithmetic"} <= codes
        subjects = {v.subject for v in violations if v.code == "debit_arithmetic"}
        assert subjects == {"r1", "r2"}
        bad = " ".join(v.message for v in violations if v.code == "bad_value")
        assert str(big) in bad and str(low) in bad
        if store.dialect == "sqlite":
            assert "1.0e+308" in bad and "'lots'" in bad
        # the accounts can still be read, listed and shown
        listed = {a.id for a in await store.list_accounts()}
        assert {account.id, other.id} <= listed
    finally:
        await store.close()


async def test_audit_sums_exactly_past_64_bits(dsn: str) -> None:
    """Balances are compared with the exact sum, even where a 64-bit sum would wrap."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        big = 2**62
        for amount in (big, big, -big, -big):  # the running sum passes 2^63 and comes back
            await store.db.execute(
                "INSERT INTO ledger_entries (account_id, kind, amount_micros, partial,"
                " created_at) VALUES (?, 'adjustment', ?, ?, 0)",
                account.id, amount, False,
            )  # fmt: skip
        codes = [v.code for v in await audit(store, BillingConfig())]
        assert "balance" not in codes  # 1 USD = the exact sum of the entries
        assert codes.count("bad_value") == 4
    finally:
        await store.close()
