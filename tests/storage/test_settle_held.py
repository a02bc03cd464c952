"""``settle(held_micros=…)``: what the caller says a reservation holds lets SQLite close it
without reading it back, and nothing else. Whatever the caller says (right, wrong, for
another account's debit, after an extension, twice), the settlement is the one the store
would make without being told: the same debit, the reservation's real amount given back,
one debit a request, and the books hold."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.storage import open_storage
from tollway.storage.base import NewEntry


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    credit=st.integers(2_000, 100_000),  # covers any hold and extension
    amount=st.integers(1, 1_000),
    extension=st.integers(0, 1_000),
    spent_share=st.floats(0, 1),
    told=st.one_of(st.none(), st.just("right"), st.integers(-2_000, 2_000)),
    other_account=st.booleans(),
)
def test_what_the_caller_says_it_holds_never_changes_the_books(
    dsn: str, tmp_path_factory: Any, credit: int, amount: int, extension: int,
    spent_share: float, told: int | str | None, other_account: bool,
) -> None:
    if dsn.startswith("sqlite"):
        dsn = f"sqlite:///{tmp_path_factory.mktemp('held') / 't.db'}"
    tag = secrets.token_hex(4)

    async def go() -> None:
        store = await open_storage(dsn)
        try:
            account = await store.create_account(f"a_{tag}")
            other = await store.create_account(f"b_{tag}")
            for acct in (account, other):
                await store.append(NewEntry(acct.id, "credit", credit))
            held = await store.reserve(account.id, f"r_{tag}", "inst", amount, figures=False)
            assert held.reservation is not None
            holds = amount
            if extension:
                grown = await store.extend(held.reservation.id, extension)
                assert grown.reservation is not None
                holds += extension
            spent = int(holds * spent_share)
            payer = other if other_account else account
            debit = NewEntry(payer.id, "debit", -spent, request_id=f"r_{tag}",
                             base_cost_micros=spent, platform_fee_micros=0,
                             total_cost_micros=spent)  # fmt: skip
            said = None if told is None else holds if told == "right" else holds + int(told)
            entry = await store.settle(held.reservation.id, debit, held_micros=said)
            assert entry is not None and entry.entry.amount_micros == -spent
            assert await store.settle(held.reservation.id, debit, held_micros=said) is None
            assert await store.open_reservations() == [] or all(
                r.account_id not in (account.id, other.id) for r in await store.open_reservations()
            )
            mine = await store.get_account(account.id)
            theirs = await store.get_account(payer.id)
            assert mine is not None and mine.reserved_micros == 0
            assert theirs is not None and theirs.balance_micros == credit - spent
            if other_account:
                assert mine.balance_micros == credit
            assert await store.balance_mismatches() == []
            assert await store.reserved_mismatches() == []
        finally:
            await store.close()

    asyncio.run(go())
