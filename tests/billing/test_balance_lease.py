"""Balance leases (``billing.balance_lease``): holds from memory, never an overdraft.

Real storage on both dialects: one instance's holds come from one lease row and settle
into it; a hypothesis property over sequences of admissions, extensions, settlements and
tidying holds the books after every step and refuses only what the account cannot cover;
two instances on one database never overdraw; a dead instance's lease is released by
crash recovery; idle and old leases go back.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.billing.audit import audit
from tollway.billing.balance_lease import BalanceLeases
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account, credit
from tollway.billing.recovery import InstanceLease
from tollway.storage import open_storage
from tollway.storage.base import LEASE_PREFIX, InstanceRecord, NewEntry

CONFIG = BillingConfig()


def debit(account_id: str, request_id: str, spent: int) -> NewEntry:
    return NewEntry(account_id=account_id, kind="debit", amount_micros=-spent,
                    request_id=request_id, base_cost_micros=spent, platform_fee_micros=0,
                    total_cost_micros=spent)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def leases(store: Any, instance: str, clock: Any = time.time, **kw: Any) -> BalanceLeases:
    options = {"lease_requests": 64, "idle_seconds": 2.0, "max_age_seconds": 60.0} | kw
    return BalanceLeases(store, instance, clock=clock, **options)


async def register(store: Any, instance: str) -> None:
    now = time.time()
    await store.register_instance(InstanceRecord(instance, "elsewhere", 1, now, now))


async def books(store: Any, account_id: str) -> tuple[int, int, int, list[Any]]:
    """(balance, reserved, sum of debits, audit violations)."""
    account = await store.get_account(account_id)
    assert account is not None
    entries = await store.entries(account_id, limit=100_000)
    debits = sum(-e.entry.amount_micros for e in entries if e.entry.kind == "debit")
    return account.balance_micros, account.reserved_micros, debits, await audit(store, CONFIG)


async def reserved_of(store: Any, account_id: str) -> int:
    account = await store.get_account(account_id)
    assert account is not None
    return int(account.reserved_micros)


async def reservation_rows(store: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.db.fetch("SELECT * FROM reservations")]


async def test_holds_come_from_one_lease_and_settle_into_it(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="100")
        await register(store, "inst_a")
        lease = leases(store, "inst_a")
        outcomes = await asyncio.gather(*(
            lease.reserve(account.id, f"req_{i}", "inst_a", 10_000) for i in range(20)
        ))  # fmt: skip
        assert all(o.reservation is not None for o in outcomes)
        rows = await reservation_rows(store)
        assert len(rows) == 1 and rows[0]["request_id"].startswith(LEASE_PREFIX)
        # 64 holds' worth, taken while 8 times that was available
        assert rows[0]["amount_micros"] == 64 * 10_000
        for i, o in enumerate(outcomes):
            assert o.reservation is not None
            await lease.settle(o.reservation.id, debit(account.id, f"req_{i}", 500 * i))
        balance, reserved, debits, violations = await books(store, account.id)
        assert debits == sum(500 * i for i in range(20))
        assert balance == 100_000_000 - debits and reserved == 64 * 10_000 - debits
        assert violations == []
        # a second settlement of a request is no second debit
        assert await lease.settle(outcomes[0].reservation.id,  # type: ignore[union-attr]
                                  debit(account.id, "req_0", 0)) is None  # fmt: skip
        await lease.close()
        balance, reserved, _, violations = await books(store, account.id)
        assert reserved == 0 and balance == 100_000_000 - debits and violations == []
        assert [r["state"] for r in await reservation_rows(store)] == ["released"]
    finally:
        await store.close()


async def test_a_nearly_empty_account_is_lent_exactly_what_it_has(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="0.05")  # 50,000 µ$
        await register(store, "inst_a")
        lease = leases(store, "inst_a")
        taken = [await lease.reserve(account.id, f"req_{i}", "inst_a", 20_000) for i in range(3)]
        assert [o.reservation is not None for o in taken] == [True, True, False]
        refusal = taken[2]
        # the refusal shows what is truly available: the lease's free part counts
        assert refusal.balance_micros - refusal.reserved_micros == 10_000
        assert await reserved_of(store, account.id) == 40_000
        small = await lease.reserve(account.id, "req_3", "inst_a", 10_000)
        assert small.reservation is not None  # the last of the balance, not one µ$ more
        assert (await lease.reserve(account.id, "req_4", "inst_a", 1)).reservation is None
        for i, o in enumerate([*taken[:2], small]):
            assert o.reservation is not None
            await lease.settle(o.reservation.id, debit(account.id, f"req_{i}", 5_000))
        # 35,000 left, all of it free in the lease: a refusal counts it as available
        assert await reserved_of(store, account.id) == 35_000
        over = await lease.reserve(account.id, "req_5", "inst_a", 35_001)
        assert over.reservation is None
        assert over.balance_micros - over.reserved_micros == 35_000
        last = await lease.reserve(account.id, "req_6", "inst_a", 35_000)
        assert last.reservation is not None
        await lease.settle(last.reservation.id, debit(account.id, "req_6", 0))
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (35_000, 0, 15_000, [])
    finally:
        await store.close()


@st.composite
def workloads(draw: Any) -> tuple[int, list[tuple[Any, ...]]]:
    credit = draw(st.integers(1, 400_000))
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 120_000), st.booleans()),
        st.tuples(st.just("extend"), st.integers(0, 30), st.integers(1, 50_000)),
        st.tuples(st.just("settle"), st.integers(0, 30), st.floats(0, 1)),
        st.tuples(st.just("tidy"), st.floats(0, 100)),
    ), max_size=40))  # fmt: skip
    return credit, ops


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(workload=workloads())
def test_the_books_hold_and_only_what_cannot_be_covered_is_refused(
    dsn: str, tmp_path_factory: Any, workload: tuple[int, list[tuple[Any, ...]]]
) -> None:
    """On SQLite a fresh file per example; on PostgreSQL (whose common money movements are
    one statement each, ``storage.pg_money``) one schema, a fresh account per example."""
    credit, ops = workload
    if dsn.startswith("sqlite"):
        dsn = f"sqlite:///{tmp_path_factory.mktemp('lease') / 't.db'}"
    tag = secrets.token_hex(4)  # request ids are unique in the ledger across examples
    inst = f"inst_{tag}"

    async def go() -> None:
        store = await open_storage(dsn)
        try:
            account = await create_account(store, f"a_{tag}", credit_usd=credit / 1_000_000)
            await register(store, inst)
            clock = Clock()
            lease = leases(store, inst, clock, idle_seconds=5.0, max_age_seconds=30.0)
            open_holds: dict[str, tuple[str, int]] = {}  # hold id → (request id, amount)
            spent = 0
            for n, op in enumerate(ops):
                if op[0] == "reserve":
                    amount, roomy = op[1], op[2]
                    in_flight = sum(a for _, a in open_holds.values())
                    out = await lease.reserve(
                        account.id, f"req_{tag}_{n}", inst, amount,
                        roomy=(amount * 6, amount * 48) if roomy and amount else None,
                    )  # fmt: skip
                    if out.reservation is None:  # only when the account truly lacks it
                        assert credit - spent - in_flight < amount
                    else:
                        assert out.reservation.amount_micros >= amount
                        open_holds[out.reservation.id] = (f"req_{tag}_{n}",
                                                          out.reservation.amount_micros)
                elif op[0] == "extend" and open_holds:
                    hold_id = sorted(open_holds)[op[1] % len(open_holds)]
                    request_id, held = open_holds[hold_id]
                    in_flight = sum(a for _, a in open_holds.values())
                    out = await lease.extend(hold_id, op[2])
                    if out.reservation is None:
                        assert credit - spent - in_flight < op[2]
                    else:
                        assert out.reservation.amount_micros == held + op[2]
                        open_holds[hold_id] = (request_id, held + op[2])
                elif op[0] == "settle" and open_holds:
                    hold_id = sorted(open_holds)[op[1] % len(open_holds)]
                    request_id, held = open_holds.pop(hold_id)
                    amount = int(held * op[2])
                    await lease.settle(hold_id, debit(account.id, request_id, amount))
                    spent += amount
                elif op[0] == "tidy":
                    clock.now += op[1]
                    await lease.tidy()
                balance, reserved, debits, violations = await books(store, account.id)
                assert violations == [] and debits == spent and balance == credit - spent
                assert balance - reserved >= 0
                assert reserved >= sum(a for _, a in open_holds.values())
                own = sum(r["amount_micros"] for r in await reservation_rows(store)
                          if r["state"] == "open" and r["account_id"] == account.id
                          and r["request_id"].startswith("req_"))
                assert lease.leased_micros() == reserved - own  # free requests: their own
            for hold_id, (request_id, _) in open_holds.items():
                await lease.settle(hold_id, debit(account.id, request_id, 0))
            await lease.close()
            balance, reserved, _, violations = await books(store, account.id)
            assert reserved == 0 and balance == credit - spent and violations == []
        finally:
            await store.close()

    asyncio.run(go())


async def test_two_instances_never_overdraw(dsn: str) -> None:
    stores = [await open_storage(dsn), await open_storage(dsn)]
    try:
        account = await create_account(stores[0], "a", credit_usd="2.00")
        instances = [leases(stores[k], f"inst_{k}", idle_seconds=0.05, max_age_seconds=0.3)
                     for k in range(2)]  # fmt: skip
        for k, lease in enumerate(instances):
            await register(stores[k], f"inst_{k}")
            lease.start()
        rng = random.Random(7)
        admitted: list[int] = []

        async def one(i: int) -> None:
            lease = instances[i % 2]
            amount = rng.choice([5_000, 40_000, 250_000])
            out = await lease.reserve(account.id, f"req_{i:04d}", f"inst_{i % 2}", amount)
            if out.reservation is None:
                return
            await asyncio.sleep(rng.random() * 0.05)
            held = out.reservation.amount_micros
            if rng.random() < 0.3:
                grown = await lease.extend(out.reservation.id, 20_000)
                if grown.reservation is not None:
                    held = grown.reservation.amount_micros
            spent = rng.randint(held // 2, held)
            await lease.settle(out.reservation.id, debit(account.id, f"req_{i:04d}", spent))
            admitted.append(spent)

        await asyncio.gather(*(one(i) for i in range(400)))
        # a second wave once the leases have gone idle: near a balance's end a request one
        # instance refuses may find what it needs free in the other's lease (README,
        # "Balance leases"), and in one wave how much that leaves unspent depends on how the
        # two instances' requests interleave; an idle lease gives its free part back
        await asyncio.sleep(0.2)
        await asyncio.gather(*(one(i) for i in range(400, 800)))
        for lease in instances:
            await lease.close()
        balance, reserved, debits, violations = await books(stores[0], account.id)
        assert violations == [] and reserved == 0
        assert balance == 2_000_000 - debits >= 0 and debits == sum(admitted)
        assert len(admitted) > 20 and balance < 1_000_000  # most of the balance was spent
    finally:
        for store in stores:
            await store.close()


async def test_a_dead_instances_lease_is_released_by_recovery(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        old = time.time() - 3600
        await store.register_instance(InstanceRecord("inst_dead", "elsewhere", 1, old, old))
        dead = leases(store, "inst_dead")
        out = await dead.reserve(account.id, "req_1", "inst_dead", 10_000)
        assert out.reservation is not None and await reserved_of(store, account.id)
        # the instance dies here; a live one recovers its lease
        alive = InstanceLease(store, CONFIG)
        released = await alive.start(background=False)
        assert len(released) == 1 and released[0].entry.kind == "unsettled"
        assert (released[0].entry.request_id or "").startswith(LEASE_PREFIX)
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (1_000_000, 0, 0, [])
        await alive.stop()
    finally:
        await store.close()


async def test_a_live_instances_old_lease_is_not_taken_for_an_orphan(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        recovery = InstanceLease(store, BillingConfig(reservation_max_age_seconds=0.01))
        await recovery.start(background=False)
        lease = leases(store, recovery.id)
        out = await lease.reserve(account.id, "req_1", recovery.id, 10_000)
        assert out.reservation is not None
        await asyncio.sleep(0.05)
        assert await recovery.recover() == []  # a request this old would have been
        # and the audit agrees: a lease is overdue only past its age limit and a request's
        assert await audit(store, BillingConfig(reservation_max_age_seconds=0.01)) == []
        [stale] = await audit(store, BillingConfig(reservation_max_age_seconds=0.01,
                                                   lease_max_age_seconds=0.01))
        assert stale.code == "stale_reservation"
        await lease.settle(out.reservation.id, debit(account.id, "req_1", 3_000))
        await lease.close()
        assert (await books(store, account.id))[1:] == (0, 3_000, [])
        await recovery.stop()
    finally:
        await store.close()


async def test_a_live_instances_lease_past_both_limits_is_released(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        config = BillingConfig(reservation_max_age_seconds=0.01, lease_max_age_seconds=0.01)
        recovery = InstanceLease(store, config)
        await recovery.start(background=False)
        lease = leases(store, recovery.id)
        out = await lease.reserve(account.id, "req_1", recovery.id, 10_000)
        assert out.reservation is not None
        await asyncio.sleep(0.05)
        [released] = await recovery.recover()
        assert (released.entry.request_id or "").startswith(LEASE_PREFIX)
        await lease.settle(out.reservation.id, debit(account.id, "req_1", 3_000))
        await lease.close()
        assert (await books(store, account.id))[1:3] == (0, 3_000)
        await recovery.stop()
    finally:
        await store.close()


async def test_idle_and_old_leases_go_back(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="10")
        await register(store, "inst_a")
        clock = Clock()
        lease = leases(store, "inst_a", clock, idle_seconds=2.0, max_age_seconds=10.0)
        first = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert first.reservation is not None
        await lease.settle(first.reservation.id, debit(account.id, "req_1", 1_000))
        clock.now += 1.0
        await lease.tidy()
        assert lease.leased_micros() > 0  # not idle long enough
        clock.now += 1.5
        await lease.tidy()
        assert lease.leased_micros() == 0
        assert await reserved_of(store, account.id) == 0

        # busy past its age: stops taking holds, gives back its free part, closes at the last
        held = await lease.reserve(account.id, "req_2", "inst_a", 10_000)
        assert held.reservation is not None
        clock.now += 11.0
        await lease.tidy()
        assert await reserved_of(store, account.id) == 10_000
        after = await lease.reserve(account.id, "req_3", "inst_a", 10_000)
        assert after.reservation is not None  # from a new lease
        opened = [r for r in await reservation_rows(store) if r["state"] == "open"]
        assert len(opened) == 2
        after_lease = max(opened, key=lambda r: r["created_at"])["request_id"]
        grown = await lease.extend(held.reservation.id, 5_000)  # its old lease grows for it
        assert grown.reservation is not None and grown.reservation.amount_micros == 15_000
        old = [r for r in await reservation_rows(store) if r["request_id"] != after_lease]
        assert [(r["state"], r["amount_micros"]) for r in old] == [
            ("released", 0), ("open", 15_000)]
        # its last request settles: the unspent part goes back at once, then it closes
        await lease.settle(held.reservation.id, debit(account.id, "req_2", 2_000))
        assert await reserved_of(store, account.id) == lease.leased_micros()
        await lease.tidy()
        states = sorted(r["state"] for r in await reservation_rows(store))
        assert states == ["open", "released", "released"]
        assert after.reservation is not None
        await lease.settle(after.reservation.id, debit(account.id, "req_3", 3_000))
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (10_000_000 - 6_000, 0, 6_000, [])
    finally:
        await store.close()


@pytest.mark.parametrize("spent", [-1, 10_001])
async def test_a_debit_beyond_its_hold_is_refused(dsn: str, spent: int) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        lease = leases(store, "inst_a")
        out = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert out.reservation is not None
        with pytest.raises(ValueError):
            await lease.settle(out.reservation.id, debit(account.id, "req_1", spent))
        await lease.close()
        assert (await books(store, account.id)) == (1_000_000, 0, 0, [])
    finally:
        await store.close()


async def test_roomy_holds_while_the_account_is_ample(dsn: str) -> None:
    """A roomy hold spares the tokenizer (billing.roomy_output_factor): under leases every
    request of an ample account gets it, however many run at once; a thin one gets the
    cap's cost, as without leases."""
    store = await open_storage(dsn)
    try:
        rich = await create_account(store, "rich", credit_usd="1000")
        thin = await create_account(store, "thin", credit_usd="0.05")
        lease = leases(store, "inst_a")
        held = await asyncio.gather(*(
            lease.reserve(rich.id, f"req_{i}", "inst_a", 1_000, roomy=(6_000, 48_000))
            for i in range(1_000)
        ))  # fmt: skip
        assert {o.reservation.amount_micros for o in held if o.reservation} == {6_000}
        assert len(held) == 1_000
        small = await lease.reserve(thin.id, "req_t", "inst_a", 1_000, roomy=(6_000, 48_000))
        assert small.reservation is not None and small.reservation.amount_micros == 1_000
        for i, o in enumerate([*held, small]):
            assert o.reservation is not None
            account = thin.id if o is small else rich.id
            request = "req_t" if o is small else f"req_{i}"
            await lease.settle(o.reservation.id, debit(account, request, 500))
        await lease.close()
        for one in (rich, thin):
            assert (await books(store, one.id))[1] == 0
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_requests_waiting_for_a_growth_go_on_together(tmp_path: Any) -> None:
    """Under load an event-loop iteration is long (tens of ms at 500 paced streams): the
    requests that wait for a lease's growth must all go on when it ends, not one per
    iteration (a lock's hand-over: 126 new requests once waited 9.5 s that way). Counted
    in loop iterations on SQLite, whose group commit ends after a few of them (on
    PostgreSQL the loop spins freely while a statement travels, so counting says nothing)."""
    store = await open_storage(f"sqlite:///{tmp_path / 't.db'}")
    try:
        account = await create_account(store, "a", credit_usd="1000")
        lease = leases(store, "inst_a")
        iterations = 0
        done = False

        async def count() -> None:
            nonlocal iterations
            while not done:
                iterations += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count())
        held = await asyncio.gather(*(
            lease.reserve(account.id, f"req_{i}", "inst_a", 1_000) for i in range(400)
        ))  # fmt: skip
        done = True
        await counter
        assert all(o.reservation is not None for o in held)
        # a few growths (64 holds' worth, then twice what is held), each a commit away
        assert iterations < 150, iterations
        for i, o in enumerate(held):
            assert o.reservation is not None
            await lease.settle(o.reservation.id, debit(account.id, f"req_{i}", 1_000))
        await lease.close()
        assert (await books(store, account.id))[1:] == (0, 400_000, [])
    finally:
        await store.close()


async def test_a_growth_not_ample_for_its_roomy_amount_takes_the_plain_one(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="0.05")  # 50,000 µ$
        first = await store.reserve(account.id, "lease_x", "inst_a", 10_000)
        assert first.reservation is not None
        for roomy in ((20_000, 160_000), (30_000, 240_000)):  # the same as the plain amount too
            grown = await store.extend(first.reservation.id, 20_000, roomy=roomy)
            assert grown.reservation is not None and grown.granted_micros == 20_000
        refused = await store.extend(first.reservation.id, 1, roomy=(2, 16))
        assert refused.reservation is None  # all 50,000 held
        assert await reserved_of(store, account.id) == 50_000
    finally:
        await store.close()


async def test_a_lease_released_under_its_instance_takes_no_more_holds(dsn: str) -> None:
    """Crash recovery took the instance for dead and released its lease: the next
    settlement against it finds it closed, so later requests hold from a new lease."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="100")  # a wide lease
        await register(store, "inst_a")
        lease = leases(store, "inst_a")
        first = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        second = await lease.reserve(account.id, "req_2", "inst_a", 10_000)
        assert first.reservation is not None and second.reservation is not None
        [row] = await reservation_rows(store)
        assert row["amount_micros"] >= 30_000  # room for req_3 in memory
        assert await store.release_orphan(row["id"], "owner instance inst_a died") is not None
        await lease.settle(first.reservation.id, debit(account.id, "req_1", 4_000))
        third = await lease.reserve(account.id, "req_3", "inst_a", 10_000)
        assert third.reservation is not None
        rows = await reservation_rows(store)
        assert len(rows) == 2 and {r["state"] for r in rows} == {"released", "open"}
        await lease.settle(second.reservation.id, debit(account.id, "req_2", 1_000))
        await lease.settle(third.reservation.id, debit(account.id, "req_3", 2_000))
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (99_993_000, 0, 7_000, [])
    finally:
        await store.close()


async def test_a_spent_account_keeps_its_open_lease(dsn: str) -> None:
    """A refusal because the account is empty does not retire its lease (a closed lease
    is told apart by ``ReserveOutcome.not_open``, not by a balance of zero)."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="0.01")  # 10,000 µ$
        await register(store, "inst_a")
        lease = leases(store, "inst_a")
        out = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert out.reservation is not None
        await lease.settle(out.reservation.id, debit(account.id, "req_1", 10_000))
        assert (await lease.reserve(account.id, "req_2", "inst_a", 1)).reservation is None
        await credit(store, account.id, "0.01", note="top-up")
        again = await lease.reserve(account.id, "req_3", "inst_a", 5_000)
        assert again.reservation is not None
        assert len(await reservation_rows(store)) == 1  # the same lease, grown again
        await lease.settle(again.reservation.id, debit(account.id, "req_3", 5_000))
        await lease.close()
        assert (await books(store, account.id))[:3] == (5_000, 0, 15_000)
    finally:
        await store.close()


async def test_an_instance_taken_for_dead_retires_its_leases(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1")
        instance = InstanceLease(store, BillingConfig(instance_heartbeat_seconds=0.02))
        await instance.start()
        lease = leases(store, instance.id)
        instance.on_judged_dead = lease.retire_all
        out = await lease.reserve(account.id, "req_1", instance.id, 10_000)
        assert out.reservation is not None and lease.leased_micros() > 0
        await store.remove_instance(instance.id)  # another instance took it for dead
        for _ in range(100):
            await asyncio.sleep(0.01)
            if any(r.id == instance.id for r in await store.list_instances()):
                break
        later = await lease.reserve(account.id, "req_2", instance.id, 10_000)
        assert later.reservation is not None
        assert len(await reservation_rows(store)) == 2  # a new lease for new requests
        for request_id, o in (("req_1", out), ("req_2", later)):
            assert o.reservation is not None
            await lease.settle(o.reservation.id, debit(account.id, request_id, 1_000))
        await lease.close()
        assert (await books(store, account.id))[1:] == (0, 2_000, [])
        await instance.stop()
    finally:
        await store.close()


async def test_concurrent_settlements_of_a_lease_are_written_together(dsn: str) -> None:
    """On PostgreSQL the settlements that come while one is written go in one statement
    (one lock and one commit of the account's row for the batch); each caller still gets
    its own debit, and one that cannot be written fails alone."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="100")
        await register(store, "inst_a")
        lease = leases(store, "inst_a")
        outs = await asyncio.gather(*(
            lease.reserve(account.id, f"req_{i}", "inst_a", 10_000) for i in range(120)))
        holds = [o.reservation.id for o in outs if o.reservation is not None]
        assert len(holds) == 120

        async def settle(i: int) -> Any:
            return await lease.settle(holds[i], debit(account.id, f"req_{i}", 100 + i))

        first = await asyncio.gather(*(settle(i) for i in range(60)))
        assert len({e.id for e in first}) == 60
        if dsn.startswith("postgres"):  # written together, not one statement each
            assert store._lease_settlements.batches <= 3
        # a debit already written for req_67 (a bug elsewhere): its settlement fails alone
        await store.append(debit(account.id, "req_67", 1_000))
        rest = await asyncio.gather(*(settle(i) for i in range(60, 120)),
                                    return_exceptions=True)
        assert [60 + i for i, r in enumerate(rest) if isinstance(r, BaseException)] == [67]
        assert all(r is not None for r in rest)
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        spent = 1_000 + sum(100 + i for i in range(120) if i != 67)
        assert (balance, reserved, debits, violations) == (100_000_000 - spent, 0, spent, [])
    finally:
        await store.close()


async def test_a_growth_written_as_its_caller_is_cancelled_still_goes_back(dsn: str) -> None:
    """A client that goes away while its request takes or grows the lease cancels the
    request; what the database granted is the lease's all the same, and goes back with
    it (the lease in memory was left without its row's id, so the account's next request
    failed on taking it again, or with less than its row, the rest reserved until crash
    recovery)."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="100")
        await register(store, "inst_a")
        held_store = _HeldAfterWrite(store)
        lease = leases(held_store, "inst_a", lease_requests=2)
        held_store.hold("reserve")
        first = asyncio.create_task(lease.reserve(account.id, "req_1", "inst_a", 10_000))
        await held_store.written["reserve"].wait()
        first.cancel()  # the lease's first reservation is written
        with pytest.raises(asyncio.CancelledError):
            await first
        held_store.release("reserve")
        held = await lease.reserve(account.id, "req_2", "inst_a", 10_000)
        assert held.reservation is not None
        held_store.hold("extend")
        growing = asyncio.create_task(lease.extend(held.reservation.id, 50_000))
        await held_store.written["extend"].wait()
        growing.cancel()  # the lease's growth is written
        with pytest.raises(asyncio.CancelledError):
            await growing
        held_store.release("extend")
        for _ in range(20):  # the written growth's answer comes back
            await asyncio.sleep(0)
        assert lease.leased_micros() == await reserved_of(store, account.id) == 120_000
        await lease.settle(held.reservation.id, debit(account.id, "req_2", 4_000))
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (100_000_000 - 4_000, 0, 4_000, [])
        assert {r["state"] for r in await reservation_rows(store)} == {"released"}
    finally:
        await store.close()


class _HeldAfterWrite:
    """The real store; ``hold(name)`` makes that method wait, once written, until
    ``release(name)`` (a write whose answer comes back late, as under load)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.written: dict[str, asyncio.Event] = {}
        self._released: dict[str, asyncio.Event] = {}

    def hold(self, name: str) -> None:
        self.written[name], self._released[name] = asyncio.Event(), asyncio.Event()

    def release(self, name: str) -> None:
        self._released.pop(name).set()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name not in self.written:
            return real

        async def held(*args: Any, **kw: Any) -> Any:
            outcome = await real(*args, **kw)
            self.written.pop(name).set()
            await self._released[name].wait()
            return outcome

        return held


async def test_a_lease_settled_while_its_free_part_goes_back_is_not_forgotten(
    dsn: str,
) -> None:
    """A request settling while its retired lease's free part is being given back leaves
    its unspent hold in the lease (it began before the lease retired); the lease is closed
    by the next round, not forgotten with that part still reserved."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="10")
        await register(store, "inst_a")
        clock = Clock()
        held_store = _HeldAfterWrite(store)
        lease = leases(held_store, "inst_a", clock, max_age_seconds=10.0)
        out = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert out.reservation is not None
        held_store.hold("settle_leased")
        settling = asyncio.create_task(
            lease.settle(out.reservation.id, debit(account.id, "req_1", 4_000)))
        await held_store.written["settle_leased"].wait()  # before the lease retires
        clock.now += 11.0
        held_store.hold("shrink_lease")
        tidying = asyncio.create_task(lease.tidy())  # retires it, gives its free part back
        await held_store.written["shrink_lease"].wait()
        held_store.release("settle_leased")
        await settling  # its unspent 6,000 stays in the lease
        held_store.release("shrink_lease")
        await tidying
        assert await reserved_of(store, account.id) == lease.leased_micros() == 6_000
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (10_000_000 - 4_000, 0, 4_000, [])
    finally:
        await store.close()


async def test_a_hold_grown_while_its_lease_gives_back_its_free_part_is_backed(
    dsn: str,
) -> None:
    """A request extending its hold while its retired lease's free part is being given back
    must not take that part: it is gone from the database once the give-back is written.
    The lease grows for it instead, so its settlement finds the lease holding enough (before,
    the lease in memory still showed the part free until the give-back returned, the hold
    took it, and the settlement failed with the lease short of it: the debit not written)."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="10")
        await register(store, "inst_a")
        clock = Clock()
        held_store = _HeldAfterWrite(store)
        lease = leases(held_store, "inst_a", clock, max_age_seconds=10.0)
        out = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert out.reservation is not None
        leased = lease.leased_micros()
        assert leased > 110_000  # a wide lease: its free part covers the extension
        clock.now += 11.0
        held_store.hold("shrink_lease")
        tidying = asyncio.create_task(lease.tidy())  # retires it, gives its free part back
        await held_store.written["shrink_lease"].wait()
        grown = await lease.extend(out.reservation.id, 100_000)
        assert grown.reservation is not None and grown.reservation.amount_micros == 110_000
        held_store.release("shrink_lease")
        await tidying
        assert await reserved_of(store, account.id) == lease.leased_micros() == 110_000
        await lease.settle(out.reservation.id, debit(account.id, "req_1", 110_000))
        await lease.close()
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (10_000_000 - 110_000, 0, 110_000, [])
    finally:
        await store.close()


async def test_close_during_a_background_give_back_leaves_no_lease_open(dsn: str) -> None:
    """close() stops the background tidying while a round is giving a retired lease's free
    part back, and the lease's last hold settles meanwhile: the round finishes (it is not
    cut off between its write and its note of it), and close() gives back and closes what
    is left, so no lease row stays open, not even one holding 0."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="10")
        await register(store, "inst_a")
        clock = Clock()
        held_store = _HeldAfterWrite(store)
        lease = leases(held_store, "inst_a", clock, idle_seconds=0.02, max_age_seconds=10.0)
        out = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert out.reservation is not None
        clock.now += 11.0  # past its age: the next round retires it, its hold in flight
        held_store.hold("shrink_lease")
        lease.start()
        await held_store.written["shrink_lease"].wait()  # the free part is given back
        await lease.settle(out.reservation.id, debit(account.id, "req_1", 4_000))
        closing = asyncio.create_task(lease.close())
        await asyncio.sleep(0.05)
        held_store.release("shrink_lease")
        await closing
        assert lease.leased_micros() == 0
        assert [r for r in await reservation_rows(store) if r["state"] == "open"] == []
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (10_000_000 - 4_000, 0, 4_000, [])
    finally:
        await store.close()


async def test_a_growth_written_while_its_idle_lease_goes_back_is_given_back_too(
    dsn: str,
) -> None:
    """A narrow lease's growth for a new request is being written when the lease, idle,
    retires and gives back all it holds: the give-back leaves the growth in the row, which
    stays open; the lease stays among the retired until that part has gone back too."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="0.1")  # never ample
        await register(store, "inst_a")
        clock = Clock()
        held_store = _HeldAfterWrite(store)
        lease = leases(held_store, "inst_a", clock, idle_seconds=2.0)
        first = await lease.reserve(account.id, "req_1", "inst_a", 10_000)
        assert first.reservation is not None
        await lease.settle(first.reservation.id, debit(account.id, "req_1", 1_000))
        assert lease.leased_micros() == 9_000
        held_store.hold("extend")
        second = asyncio.create_task(lease.reserve(account.id, "req_2", "inst_a", 20_000))
        await held_store.written["extend"].wait()  # the lease grows by the 11,000 it misses
        clock.now += 3.0
        await lease.tidy()  # idle: retired, and the 9,000 it knows of given back
        held_store.release("extend")
        out = await second  # from a new lease: the old one is retired
        assert out.reservation is not None
        await lease.tidy()  # the old lease's 11,000 goes back, and it closes
        await lease.settle(out.reservation.id, debit(account.id, "req_2", 5_000))
        await lease.close()
        assert lease.leased_micros() == 0
        assert [r for r in await reservation_rows(store) if r["state"] == "open"] == []
        balance, reserved, debits, violations = await books(store, account.id)
        assert (balance, reserved, debits, violations) == (100_000 - 6_000, 0, 6_000, [])
    finally:
        await store.close()
