"""Spend caps on real SQLite and PostgreSQL: held by the balance's own reservation, so
concurrent requests never overshoot a cap; settlement and orphan release close the holds."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.limits.caps import Cap, period_bounds
from tollway.storage import open_storage
from tollway.storage.base import NewEntry
from tollway.storage.sql_caps import read_caps

DAY = 86400.0


def caps_for(key_id: str, account_id: str, key_cap: int, account_cap: int) -> tuple[Cap, ...]:
    start, reset = period_bounds("daily", 1_800_000_000)
    return (Cap("key", key_id, "daily", start, reset, key_cap),
            Cap("account", account_id, "daily", start, reset, account_cap))  # fmt: skip


def debit_of(account_id: str, request_id: str, cost: int) -> NewEntry:
    return NewEntry(account_id=account_id, kind="debit", amount_micros=-cost,
                    request_id=request_id, total_cost_micros=cost,
                    base_cost_micros=cost, platform_fee_micros=0)  # fmt: skip


async def assert_all_spent(store: Any, caps: tuple[Cap, ...], spent: int) -> None:
    """Every cap's counter shows ``spent`` and nothing held, and the books pass the audit."""
    async with store.db.transaction() as tx:
        states = await read_caps(tx, caps)
    assert [(s.spent_micros, s.reserved_micros) for s in states] == [(spent, 0), (spent, 0)]
    assert not await audit(store, BillingConfig())


async def test_concurrent_reservations_never_overshoot(dsn: str) -> None:
    """100 concurrent reservations of random sizes against a key cap and an account cap."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "acme", credit_usd="1000")
        key_id = "key_" + secrets.token_hex(4)
        rng = __import__("random").Random(7)
        amounts = [rng.randrange(1, 50_000) for _ in range(100)]
        caps = caps_for(key_id, account.id, key_cap=1_000_000, account_cap=2_000_000)

        async def one(i: int, amount: int) -> tuple[str | None, int, str | None]:
            out = await store.reserve(account.id, f"req_{i}", "inst", amount, caps=caps)
            refused = out.refused_cap.scope if out.refused_cap is not None else None
            return (out.reservation.id if out.reservation else None), amount, refused

        results = await asyncio.gather(*(one(i, a) for i, a in enumerate(amounts)))
        held = sum(a for rid, a, _ in results if rid)
        assert held <= 1_000_000
        refused = [r for rid, _, r in results if rid is None]
        assert refused and set(refused) == {"key"}  # the key's cap is the tighter
        smallest_refused = min(a for rid, a, _ in results if rid is None)
        assert held + smallest_refused > 1_000_000  # refused only when it did not fit
        async with store.db.transaction() as tx:
            states = await read_caps(tx, caps)
        assert [s.reserved_micros for s in states] == [held, held]
        # settle each for less than it held: the debit moves to spent, the holds go
        spent = 0
        for i, (rid, amount, _) in enumerate(results):
            if rid is None:
                continue
            cost = amount // 3
            spent += cost
            await store.settle(rid, debit_of(account.id, f"req_{i}", cost), capped=True)
        await assert_all_spent(store, caps, spent)
    finally:
        await store.close()


async def test_extension_and_orphan_release(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "acme", credit_usd="1000")
        caps = caps_for("key_x", account.id, key_cap=100, account_cap=10_000)
        out = await store.reserve(account.id, "req_1", "inst", 60, caps=caps)
        assert out.reservation is not None
        more = await store.extend(out.reservation.id, 50, caps=caps)  # 110 > 100
        assert more.reservation is None and more.refused_cap.scope == "key"
        more = await store.extend(out.reservation.id, 40, caps=caps)
        assert more.reservation is not None and more.reservation.amount_micros == 100
        refused = await store.reserve(account.id, "req_2", "inst", 1, caps=caps)
        assert refused.reservation is None and refused.refused_cap.scope == "key"
        after = await store.get_account(account.id)
        assert after.reserved_micros == 100  # the refused reservation left nothing behind
        await store.release_orphan(out.reservation.id, "instance died")
        async with store.db.transaction() as tx:
            states = await read_caps(tx, caps)
        assert [(s.spent_micros, s.reserved_micros) for s in states] == [(0, 0), (0, 0)]
        assert (await store.reserve(account.id, "req_3", "inst", 100, caps=caps)).reservation
    finally:
        await store.close()


@settings(max_examples=200)
@given(st.floats(0, 4_000_000_000, allow_nan=False),
       st.sampled_from(["daily", "weekly", "monthly"]))  # fmt: skip
def test_period_bounds(now: float, period: str) -> None:
    start, reset = period_bounds(period, now)  # type: ignore[arg-type]
    assert reset is not None and start <= now < reset
    begin = datetime.fromtimestamp(start, UTC)
    assert (begin.hour, begin.minute, begin.second) == (0, 0, 0)
    if period == "daily":
        assert reset - start == DAY
    elif period == "weekly":
        assert begin.weekday() == 0 and reset - start == 7 * DAY
    else:
        assert begin.day == 1 and datetime.fromtimestamp(reset, UTC).day == 1
        assert 28 * DAY <= reset - start <= 31 * DAY
    assert period_bounds("total", now) == (0.0, None)


async def test_audit_finds_a_cap_counter_out_of_step(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "acme", credit_usd="1000")
        caps = caps_for("key_y", account.id, key_cap=10_000, account_cap=10_000)
        out = await store.reserve(account.id, "req_1", "inst", 500, caps=caps)
        assert out.reservation is not None and not await audit(store, BillingConfig())
        await store.db.execute(
            "UPDATE spend_counters SET reserved_micros = 7 WHERE scope = 'key'"
        )
        found = await audit(store, BillingConfig())
        assert [(v.code, v.subject) for v in found] == [("spend_cap", "key:key_y")]
        await store.db.execute(
            "UPDATE spend_counters SET reserved_micros = 500 WHERE scope = 'key'"
        )
        await store.db.execute("UPDATE spend_holds SET amount_micros = 400 WHERE scope = 'key'")
        await store.db.execute(
            "UPDATE spend_counters SET reserved_micros = 400 WHERE scope = 'key'"
        )
        found = await audit(store, BillingConfig())
        assert [(v.code, v.subject) for v in found] == [("spend_cap", out.reservation.id)]
    finally:
        await store.close()


async def test_reservations_and_settlements_side_by_side_never_deadlock(dsn: str) -> None:
    """Every money transaction locks the account's row before its spend counters: a
    settlement that took the counters first deadlocked (PostgreSQL) against a reservation
    holding the account and waiting for them, and the request got a 500."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "acme", credit_usd="1000")
        key_id = "key_" + secrets.token_hex(4)
        caps = caps_for(key_id, account.id, key_cap=10**9, account_cap=10**9)

        async def worker(w: int) -> int:
            cost_total = 0
            for i in range(8):
                rid = f"req_{w}_{i}"
                out = await store.reserve(account.id, rid, "inst", 30_000, caps=caps)
                assert out.reservation is not None
                cost = 1_000 + w
                await store.settle(out.reservation.id, debit_of(account.id, rid, cost),
                                   capped=True)
                cost_total += cost
            return cost_total

        spent = sum(await asyncio.gather(*(worker(w) for w in range(24))))
        await assert_all_spent(store, caps, spent)
    finally:
        await store.close()
