"""The SQL store on both dialects: accounts, keys, ledger pages, reservations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.storage import open_storage
from tollway.storage.base import Conflict, LedgerEntry, NewEntry


async def test_accounts_and_ledger_pages(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await store.create_account("acme")
        with pytest.raises(Conflict):
            await store.create_account("acme")
        for i in range(5):
            await store.append(NewEntry(account.id, "credit", 100 + i, note=f"n{i}"))
        assert (await store.get_account("acme")) == (await store.get_account(account.id))
        got = await store.get_account(account.id)
        assert got is not None and got.balance_micros == 510
        page1 = await store.entries(account.id, limit=2)
        page2 = await store.entries(account.id, before=page1[-1].id, limit=2)
        page3 = await store.entries(account.id, before=page2[-1].id, limit=2)
        amounts = [e.entry.amount_micros for e in page1 + page2 + page3]
        assert amounts == [104, 103, 102, 101, 100]
        assert [a.name for a in await store.list_accounts()] == ["acme"]
    finally:
        await store.close()


async def test_reserve_settle_and_release(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await store.create_account("a")
        await store.append(NewEntry(account.id, "credit", 1000))
        first = await store.reserve(account.id, "req-1", "inst", 700)
        assert first.reservation is not None and first.reserved_micros == 700
        refused = await store.reserve(account.id, "req-2", "inst", 400)
        assert refused.reservation is None and refused.balance_micros == 1000
        debit = NewEntry(account.id, "debit", -300, request_id="req-1", base_cost_micros=300,
                         platform_fee_micros=0, total_cost_micros=300)  # fmt: skip
        assert await store.settle(first.reservation.id, debit) is not None
        assert await store.settle(first.reservation.id, debit) is None  # idempotent
        second = await store.reserve(account.id, "req-3", "inst", 700)
        assert second.reservation is not None
        entry = await store.release_orphan(second.reservation.id, "test")
        assert entry is not None and entry.entry.kind == "unsettled"
        assert entry.entry.amount_micros == 0 and "700" in (entry.entry.note or "")
        assert await store.release_orphan(second.reservation.id, "again") is None
        final = await store.get_account(account.id)
        assert final is not None and (final.balance_micros, final.reserved_micros) == (700, 0)
        assert await store.balance_mismatches() == []
        assert await store.reserved_mismatches() == []
    finally:
        await store.close()


async def test_settlement_when_the_reservation_is_not_open(dsn: str) -> None:
    """A settlement whose reservation crash recovery already released (a late zombie), or
    that has none, debits once and gives nothing back twice; a repeat is a no-op."""
    store = await open_storage(dsn)
    try:
        account = await store.create_account("late")
        await store.append(NewEntry(account.id, "credit", 1000))
        held = await store.reserve(account.id, "req-late", "inst", 600)
        assert held.reservation is not None
        assert await store.release_orphan(held.reservation.id, "owner gone") is not None

        def debit(request_id: str, amount: int) -> NewEntry:
            return NewEntry(account.id, "debit", -amount, request_id=request_id,
                            base_cost_micros=amount, platform_fee_micros=0,
                            total_cost_micros=amount)  # fmt: skip

        assert await store.settle(held.reservation.id, debit("req-late", 250)) is not None
        assert await store.settle(held.reservation.id, debit("req-late", 250)) is None
        assert await store.settle(None, debit("req-none", 100)) is not None
        assert await store.settle(None, debit("req-none", 100)) is None
        final = await store.get_account(account.id)
        assert final is not None and (final.balance_micros, final.reserved_micros) == (650, 0)
        assert await store.balance_mismatches() == []
        assert await store.reserved_mismatches() == []
    finally:
        await store.close()


async def test_concurrent_reservations_are_held_together(dsn: str) -> None:
    """On PostgreSQL the reservations of one account that come while one is written go in
    one statement when the account covers each in turn; otherwise each is tried alone, so
    every caller gets what it would get one after another, in arrival order: a large hold
    refused between smaller ones that fit, a roomy hold falling back to the plain one, a
    request's second reservation failing alone, a disabled account refusing all (SQLite,
    which writes them one after another, is the reference)."""
    import asyncio

    store = await open_storage(dsn)
    try:
        account = await store.create_account("holds")
        await store.append(NewEntry(account.id, "credit", 1_000_000))

        async def reserve_all(requests: list[tuple[str, int, tuple[int, int] | None]]
                              ) -> list[Any]:
            return await asyncio.gather(*(
                store.reserve(account.id, request_id, "inst", amount, roomy=roomy)
                for request_id, amount, roomy in requests), return_exceptions=True)

        many = await reserve_all([(f"req-h{i}", 5_000, None) for i in range(120)])
        # each caller sees the account just after its own hold
        assert sorted(o.reserved_micros for o in many) == [5_000 * k for k in range(1, 121)]
        assert all(o.balance_micros == 1_000_000 for o in many)
        if dsn.startswith("postgres"):
            assert store._holds.batches <= 3
        # a batch that would fit but holds a request already reserved: it fails alone
        again = await reserve_all([(f"req-a{i}", 1_000, None) for i in range(3)]
                                  + [("req-h7", 1_000, None), ("req-a3", 1_000, None)])
        assert [isinstance(o, BaseException) for o in again] == [False] * 3 + [True, False]
        assert again[4].reserved_micros == 604_000
        # 396,000 available: the 500,000 hold is refused, the small ones after it fit;
        # the roomy holds take 60,000 while 230,000 is left, then the plain amount
        mixed = await reserve_all([
            ("req-m0", 100_000, None), ("req-m1", 500_000, None),
            ("req-m2", 1_000, (60_000, 230_000)), ("req-m3", 1_000, (60_000, 230_000)),
            ("req-m4", 1_000, (60_000, 230_000)),
            ("req-m5", 2_000, (60_000, 230_000)), ("req-m0", 10, None), ("req-m6", 173_000, None),
            ("req-m7", 1, None),
        ])  # fmt: skip
        granted = [None if isinstance(o, BaseException) or o.reservation is None
                   else o.reservation.amount_micros for o in mixed]  # fmt: skip
        assert granted == [100_000, None, 60_000, 60_000, 1_000, 2_000, None, 173_000, None]
        assert isinstance(mixed[6], BaseException)  # req-m0's second reservation
        assert mixed[1].balance_micros == 1_000_000 and mixed[1].reserved_micros == 704_000
        assert mixed[7].reserved_micros == mixed[8].reserved_micros == 1_000_000
        final = await store.get_account(account.id)
        assert final is not None and final.reserved_micros == 1_000_000
        await store.append(NewEntry(account.id, "credit", 1_000))
        await store.db.execute("UPDATE accounts SET disabled = ? WHERE id = ?", True, account.id)
        assert all(o.reservation is None for o in await reserve_all(
            [(f"req-d{i}", 1, None) for i in range(5)]))
        assert await store.balance_mismatches() == []
        assert await store.reserved_mismatches() == []
    finally:
        await store.close()


_HOLD_REQUESTS = st.lists(
    st.tuples(st.integers(0, 400), st.one_of(st.none(), st.tuples(st.integers(0, 600),
                                                                 st.integers(0, 1_500)))),
    min_size=1, max_size=25,
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(credit=st.integers(0, 4_000), first=st.integers(0, 400), requests=_HOLD_REQUESTS)
def test_reservations_together_grant_what_one_after_another_would(
    dsn: str, tmp_path_factory: Any, credit: int, first: int,
    requests: list[tuple[int, tuple[int, int] | None]],
) -> None:
    """Concurrent reservations of one account (on PostgreSQL, written in batches) each get
    exactly what they would get one after another in arrival order: the same grants, the
    same amounts, the balance and ``reserved`` just after their own hold; the books hold."""
    import asyncio
    import secrets

    if dsn.startswith("sqlite"):
        dsn = f"sqlite:///{tmp_path_factory.mktemp('holds') / 't.db'}"
    tag = secrets.token_hex(4)
    expected: list[tuple[int, int] | None] = []  # (granted, reserved after) or refused
    reserved = first
    for amount, roomy in requests:
        tries = [(amount, amount)]
        if roomy is not None:
            tries.insert(0, (roomy[0], max(roomy)))
        for hold, needed in tries:
            if credit - reserved >= needed:
                reserved += hold
                expected.append((hold, reserved))
                break
        else:
            expected.append(None)

    async def go() -> None:
        store = await open_storage(dsn)
        try:
            account = await store.create_account(f"h_{tag}")
            if credit:
                await store.append(NewEntry(account.id, "credit", credit))
            held = await store.reserve(account.id, f"r_{tag}", "inst", first)
            assert (held.reservation is not None) == (credit >= first)
            if held.reservation is None:
                return

            async def one(n: int, amount: int, roomy: tuple[int, int] | None) -> Any:
                return await store.reserve(account.id, f"r_{tag}_{n}", "inst", amount,
                                           roomy=roomy)  # fmt: skip

            out = await asyncio.gather(*(one(n, a, r) for n, (a, r) in enumerate(requests)))
            got = [None if o.reservation is None else
                   (o.reservation.amount_micros, o.reserved_micros) for o in out]
            assert got == expected
            assert all(o.balance_micros == credit for o in out)
            final = await store.get_account(account.id)
            assert final is not None and final.reserved_micros == reserved
            assert await store.balance_mismatches() == []
            assert await store.reserved_mismatches() == []
        finally:
            await store.close()

    asyncio.run(go())


async def test_reservation_ids_are_time_ordered(dsn: str) -> None:
    """Later reservations sort after earlier ones (their index inserts share pages)."""
    import asyncio

    store = await open_storage(dsn)
    try:
        account = await store.create_account("ordered")
        await store.append(NewEntry(account.id, "credit", 10_000))
        ids = []
        for i in range(3):
            outcome = await store.reserve(account.id, f"req-o{i}", "inst", 10)
            assert outcome.reservation is not None
            ids.append(outcome.reservation.id)
            await asyncio.sleep(0.002)
        assert ids == sorted(ids) and len(set(ids)) == 3
    finally:
        await store.close()


async def test_concurrent_settlements_are_written_together(dsn: str) -> None:
    """On PostgreSQL the settlements of one account that come while one is written go in
    one statement; a batch holding a reservation that is not open on that account, or a
    debit already written, is written one by one, so each settles as it would alone and a
    bad one fails alone."""
    import asyncio

    store = await open_storage(dsn)
    try:
        account = await store.create_account("busy")
        await store.append(NewEntry(account.id, "credit", 10_000_000))

        def debit(i: int, amount: int) -> NewEntry:
            return NewEntry(account.id, "debit", -amount, request_id=f"req-{i}",
                            base_cost_micros=amount, platform_fee_micros=0,
                            total_cost_micros=amount)  # fmt: skip

        async def settle_all(numbers: range) -> list[Any]:
            return await asyncio.gather(*(store.settle(ids[i], debit(i, 100 + i))
                                          for i in numbers), return_exceptions=True)

        held = await asyncio.gather(*(
            store.reserve(account.id, f"req-{i}", "inst", 10_000) for i in range(120)))
        ids = [h.reservation.id for h in held if h.reservation is not None]
        assert len(ids) == 120
        first = await settle_all(range(60))
        assert all(isinstance(e, LedgerEntry) for e in first)
        assert len({e.id for e in first}) == 60
        if dsn.startswith("postgres"):
            assert store._open_settlements.batches <= 3
        # req-70's reservation released by crash recovery; req-90 settles against another
        # account's reservation (a caller's mistake: that account gets its hold back)
        assert await store.release_orphan(ids[70], "owner gone") is not None
        other = await store.create_account("other")
        await store.append(NewEntry(other.id, "credit", 50_000))
        theirs = await store.reserve(other.id, "req-90x", "inst", 20_000)
        assert theirs.reservation is not None
        assert await store.settle(ids[90], NewEntry(account.id, "debit", 0,
                                                    request_id="req-90b")) is not None
        ids[90] = theirs.reservation.id
        second = await settle_all(range(60, 100))
        assert all(isinstance(e, LedgerEntry) for e in second)
        # req-110 already debited (a bug elsewhere): its settlement fails alone
        await store.append(debit(110, 1_000))
        third = await settle_all(range(100, 120))
        assert [100 + i for i, r in enumerate(third) if not isinstance(r, LedgerEntry)] == [110]
        assert isinstance(third[10], BaseException)
        spent = 1_000 + sum(100 + i for i in range(120) if i != 110)
        final = await store.get_account(account.id)
        assert final is not None
        # req-110's reservation stays open (its settlement failed): recovery's to release
        assert (final.balance_micros, final.reserved_micros) == (10_000_000 - spent, 10_000)
        assert await store.balance_mismatches() == []
        assert await store.reserved_mismatches() == []
        theirs_now = await store.get_account(other.id)
        assert theirs_now is not None and theirs_now.reserved_micros == 0
    finally:
        await store.close()
