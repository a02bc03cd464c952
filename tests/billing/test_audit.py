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
