"""Crash safety: a reservation whose process died is released and recorded as unsettled."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.billing.test_admission import CONFIG, DEP, count_words, finish, make_ctx
from tollway.billing.admission import Billing
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.billing.recovery import InstanceLease, pid_alive
from tollway.storage import open_storage
from tollway.storage.base import InstanceRecord

ROOT = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


async def test_orphan_of_a_dead_local_process_is_released(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        now = time.time()
        await store.register_instance(
            InstanceRecord("inst_dead", socket.gethostname(), dead_pid(), now, now)
        )
        ctx = make_ctx(account, "req-orphan")
        await Billing(store, CONFIG, "inst_dead", count_prompt_tokens=count_words).admit(ctx, [DEP])
        violations_before = await audit(store, CONFIG, now=now + 3600)
        assert [v.code for v in violations_before] == ["stale_reservation"]

        lease = InstanceLease(store, CONFIG)
        released = await lease.start(background=False)
        assert [e.entry.kind for e in released] == ["unsettled"]
        assert released[0].entry.request_id == "req-orphan" and released[0].entry.amount_micros == 0
        after = await store.get_account(account.id)
        assert after is not None and (after.balance_micros, after.reserved_micros) == (5_000_000, 0)
        assert await audit(store, CONFIG, now=now + 3600) == []
        assert [i.id for i in await store.list_instances()] == [lease.id]

        # If the request does settle later (it was only slow), it is still debited once.
        await finish(ctx, completion=1)
        late = await Billing(store, CONFIG, "inst_dead", count_prompt_tokens=count_words).settle(
            ctx
        )
        assert late is not None and late.entry.kind == "debit"
        assert await audit(store, CONFIG) == []
        await lease.stop()
    finally:
        await store.close()


async def test_live_instances_keep_their_reservations(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        first = InstanceLease(store, CONFIG)
        await first.start(background=False)
        ctx = make_ctx(account, "req-live")
        await Billing(store, CONFIG, first.id, count_prompt_tokens=count_words).admit(ctx, [DEP])
        now = time.time()
        await store.register_instance(  # another host, heartbeat fresh
            InstanceRecord("inst_far", "elsewhere", 1, now, now)
        )
        ctx2 = make_ctx(account, "req-far")
        await Billing(store, CONFIG, "inst_far", count_prompt_tokens=count_words).admit(ctx2, [DEP])
        second = InstanceLease(store, CONFIG)
        assert await second.start(background=False) == []
        # The far instance stops heartbeating: after the timeout its work is orphaned.
        assert await store.heartbeat(first.id, time.time() + 31)  # first keeps beating
        late = InstanceLease(store, CONFIG, clock=lambda: time.time() + 31)
        released = await late.recover()
        assert [e.entry.request_id for e in released] == ["req-far"]
        assert len(await store.open_reservations()) == 1
    finally:
        await store.close()


async def _lease_of_a_minute(store: Any) -> tuple[BillingConfig, InstanceLease]:
    """A config whose requests may last 60 s, and this process's started instance lease."""
    config = BillingConfig(reservation_max_age_seconds=60, prompt_margin_fraction=Decimal(0))
    lease = InstanceLease(store, config)
    await lease.start(background=False)
    return config, lease


async def test_too_old_reservations_are_released(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        config, lease = await _lease_of_a_minute(store)
        ctx = make_ctx(account, "req-old")
        await Billing(store, config, lease.id, count_prompt_tokens=count_words).admit(ctx, [DEP])
        assert await lease.recover() == []
        old = InstanceLease(store, config, clock=lambda: time.time() + 61)
        old.id = lease.id  # the same instance, an hour later
        assert [e.entry.request_id for e in await old.recover()] == ["req-old"]
    finally:
        await store.close()


CRASHER = textwrap.dedent(
    """
    import asyncio, sys
    from decimal import Decimal
    from tests.billing.test_admission import CONFIG, DEP, count_words, make_ctx
    from tollway.billing.admission import Billing
    from tollway.billing.recovery import InstanceLease
    from tollway.storage import open_storage

    async def main(dsn):
        store = await open_storage(dsn)
        lease = InstanceLease(store, CONFIG)
        await lease.start()
        account = await store.get_account("victim")
        ctx = make_ctx(account, "req-killed")
        await Billing(store, CONFIG, lease.id, count_prompt_tokens=count_words).admit(ctx, [DEP])
        print("reserved", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_kill_minus_nine_then_restart(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "victim", credit_usd="5")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CRASHER, dsn,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"reserved"
        held = await store.get_account(account.id)
        assert held is not None and held.reserved_micros > 0
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

        restarted = InstanceLease(store, CONFIG)
        released = await restarted.start(background=False)
        assert [e.entry.request_id for e in released] == ["req-killed"]
        after = await store.get_account(account.id)
        assert after is not None and (after.balance_micros, after.reserved_micros) == (5_000_000, 0)
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_recovery_reads_only_the_candidates(dsn: str) -> None:
    """Each heartbeat's recovery asks the database only for the reservations it may have to
    release (of no live instance, or older than any request may last), not for every live
    stream's: with thousands open, those were as many objects every 5 s on the event loop."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        config, lease = await _lease_of_a_minute(store)
        now = time.time()
        await store.register_instance(InstanceRecord("inst_far", "elsewhere", 1, now, now))
        for owner, request_id in ((lease.id, "req-here"), ("inst_far", "req-far")):
            ctx = make_ctx(account, request_id)
            await Billing(store, config, owner, count_prompt_tokens=count_words).admit(ctx, [DEP])

        async def listed(not_of: set[str], opened_before: float) -> list[str]:
            found = await store.open_reservations(not_of=not_of, opened_before=opened_before)
            return sorted(r.request_id for r in found)

        assert await listed({lease.id, "inst_far"}, now - 60) == []  # alive and young
        assert await listed({lease.id}, now - 60) == ["req-far"]  # its owner is not alive
        assert await listed({lease.id, "inst_far"}, time.time() + 1) == ["req-far", "req-here"]
        assert await listed(set(), now - 60) == ["req-far", "req-here"]  # nobody alive
        assert len(await store.open_reservations()) == 2
        assert await lease.recover() == []
        assert len(await store.open_reservations()) == 2
    finally:
        await store.close()
