"""Balance leases: admission from memory, against a slice of the balance held in the database.

Without leases every billed request writes its own reservation before its upstream call
(a conditional ``UPDATE`` of the account and an ``INSERT``, and a wait for that group's
commit) and closes it at settlement. With ``billing.balance_lease`` an instance instead
holds one reservation per account for many requests, its *lease*, and hands out holds
from it in memory:

- **Admission** takes a hold from the account's lease when the lease has it free: no
  SQL, no wait. When it has not, the lease grows by one conditional update: by
  ``lease_requests`` times the request's hold (or twice as many as are in flight, so it
  keeps up with the load) while the account has ``HEADROOM`` times that available (a
  lease never takes the last of a balance), else by exactly what is missing, so an
  instance refuses a request only when the account's available balance plus what its
  own lease has free cannot cover it (as without leases).
- A request that may take a roomy hold (``billing.roomy_output_factor``) takes it when the
  lease has it free or can grow for it while the account is ample, else the cap's cost.
- **Settlement** debits the request and shrinks the lease by the debit in one
  transaction (``settle_leased``; on PostgreSQL one statement for the settlements that
  come together): ``balance == sum(ledger)`` and ``reserved == sum(open reservations)``
  hold after every commit, as before.
- A lease idle for ``lease_idle_seconds`` is given back; one older than
  ``lease_max_age_seconds`` stops taking holds, gives back what it has free, and is
  closed once its last hold settles. Crash recovery releases a live instance's lease
  only past ``lease_max_age_seconds`` plus ``reservation_max_age_seconds``.
- A lease released under this instance (crash recovery took it for dead) takes no more
  holds once a settlement, a growth or the heartbeat finds it gone; new requests grow a
  new one.

Zero overdraft by construction: the holds of an instance never sum above its lease,
the lease is a reservation taken by the same conditional update as any other, and a
debit never exceeds its hold (``Tab``). Crash recovery releases a dead instance's leases
as it does any orphaned reservation (one ``unsettled`` entry per lease, its requests in
flight unbilled, as they are without leases). What changes for operators: the account's
``reserved`` shows the leases (at most an eighth of what was available when each grew),
a negative adjustment may have to wait for idle leases to come back, and near the end of
a balance another instance's lease may hold what a request here needs for up to
``lease_idle_seconds`` (one instance: never). Requests under a spend cap keep their own
reservations (a cap holds each request's worst case).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tollway.ids import ordered_hex
from tollway.storage.base import (
    LEASE_PREFIX,
    LeaseStore,
    LedgerEntry,
    NewEntry,
    Reservation,
    ReserveOutcome,
)

__all__ = ["BalanceLeases"]

log = logging.getLogger("tollway.billing")

# a lease grows by lease_requests holds only while the account has this many times that
# growth available (the roomy reservation's rule: never the last of a balance)
HEADROOM = 8


@dataclass(slots=True, eq=False)
class _Lease:
    """One account's lease as this instance knows it (it alone changes it while open)."""

    name: str  # its reservation's request_id: LEASE_PREFIX + a time-ordered id
    account_id: str
    amount: int  # what the lease's reservation holds in the database
    created_at: float
    held: int = 0  # the sum of the holds of requests in flight
    holds: int = 0  # how many
    used_at: float = 0.0
    id: str = ""  # its reservation's id, once it is in the database
    narrow: bool = False  # the account was not ample: grow by what is missing, unlocked
    retired: bool = False  # takes no new holds; closed when its last hold settles
    growth: asyncio.Future[None] | None = None  # the wide growth in flight, if one is

    @property
    def free(self) -> int:
        return self.amount - self.held


@dataclass(slots=True)
class _Hold:
    lease: _Lease
    request_id: str
    amount: int


class BalanceLeases:
    """A ``ReservationStore`` for ``Billing``: holds in memory, leases in ``store``."""

    def __init__(
        self,
        store: LeaseStore,
        instance_id: str,
        *,
        lease_requests: int,
        idle_seconds: float,
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._instance_id = instance_id
        self._requests = lease_requests
        self._idle = idle_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._leases: dict[str, _Lease] = {}  # account id → the lease taking holds
        self._retired: set[_Lease] = set()  # leases waiting for their last hold
        self._holds: dict[str, _Hold] = {}  # hold (reservation) id → its hold
        self._task: asyncio.Task[None] | None = None
        self._round: asyncio.Future[None] | None = None  # the background tidying's round

    # -- ReservationStore --------------------------------------------------------------

    async def reserve(
        self, account_id: str, request_id: str, instance_id: str, amount_micros: int,
        *, caps: Sequence[Any] = (), roomy: tuple[int, int] | None = None,
        early: bool = False, figures: bool = True,
    ) -> ReserveOutcome:
        """A hold of ``amount_micros`` from the account's lease, growing the lease first if
        it must; of ``roomy[0]`` when the lease has it free or can grow for it while the
        account is ample (a roomy hold never takes the last of a balance). A hold from the
        lease is in memory (nothing to commit); ``early`` applies to a request that holds
        a reservation of its own."""
        if caps or not amount_micros:
            # a spend cap holds each request's own reservation; a request that cannot cost
            # anything needs no money held, only its reservation (as without leases)
            return await self._store.reserve(
                account_id, request_id, instance_id, amount_micros, caps=caps, roomy=roomy,
                early=early, figures=figures,
            )
        lease = self._leases.get(account_id)
        if roomy is not None and (lease is None or (not lease.narrow and lease.free < roomy[0])):
            lease, refusal = await self._grow(account_id, amount_micros, roomy[0])
            if lease is None:
                return refusal
        while lease is None or lease.retired or lease.free < amount_micros:
            lease, refusal = await self._grow(account_id, amount_micros, amount_micros)
            if lease is None:
                return refusal
        amount = amount_micros
        if roomy is not None and lease.free >= roomy[0]:
            amount = roomy[0]
        hold_id = "res_" + ordered_hex(10)
        self._holds[hold_id] = _Hold(lease, request_id, amount)
        lease.held += amount
        lease.holds += 1
        reservation = Reservation(
            hold_id, request_id, account_id, instance_id, amount, "open", self._clock()
        )
        return ReserveOutcome(reservation, 0, 0)

    async def extend(
        self, reservation_id: str, amount_micros: int, *, caps: Sequence[Any] = (),
        roomy: tuple[int, int] | None = None,
    ) -> ReserveOutcome:
        """Grow a hold from its lease (growing the lease if it must)."""
        hold = self._holds.get(reservation_id)
        if hold is None:  # a request with its own reservation
            return await self._store.extend(reservation_id, amount_micros, caps=caps, roomy=roomy)
        lease = hold.lease
        while lease.free < amount_micros:
            if lease.retired:  # it grows for the holds it has, by exactly what is missing
                grown, refusal = await self._take(lease, amount_micros, None, renew=False)
            else:
                grown, refusal = await self._grow(lease.account_id, amount_micros, amount_micros)
            if grown is None:
                return refusal
            if grown is not lease and not lease.retired:  # never: a hold's lease is current
                raise RuntimeError(f"balance lease {lease.name} is out of step")
        hold.amount += amount_micros
        lease.held += amount_micros
        reservation = Reservation(
            reservation_id, hold.request_id, lease.account_id, self._instance_id,
            hold.amount, "open", self._clock(),
        )  # fmt: skip
        return ReserveOutcome(reservation, 0, 0)

    async def settle(
        self, reservation_id: str | None, debit: NewEntry, extra: Sequence[NewEntry] = (),
        *, capped: bool = False, held_micros: int | None = None,
    ) -> LedgerEntry | None:
        """The debit, against the hold's lease (its own reservation for a request that has
        one); the hold is given back to the lease whatever happens."""
        hold = self._holds.pop(reservation_id, None) if reservation_id is not None else None
        if hold is None:
            return await self._store.settle(reservation_id, debit, extra, capped=capped,
                                            held_micros=held_micros)
        lease = hold.lease
        spent = -debit.amount_micros
        if not 0 <= spent <= hold.amount:  # Tab never bills above the hold
            self._drop(hold)
            raise ValueError(f"a debit of {spent} micro-USD against a hold of {hold.amount}")
        # a retired lease gives the unspent part back at once (no new hold will use it)
        give_back = hold.amount - spent if lease.retired else 0
        try:
            entry, lease_open = await self._store.settle_leased(lease.id, debit, extra, give_back)
            lease.amount -= spent + give_back
            if not lease_open:  # released under us (recovery took us for dead): no more holds
                self._retire(lease)
        finally:
            self._drop(hold)
        return entry

    async def release_orphan(self, reservation_id: str, note: str) -> LedgerEntry | None:
        return await self._store.release_orphan(reservation_id, note)

    async def open_reservations(
        self, *, not_of: Collection[str] | None = None, opened_before: float | None = None
    ) -> list[Reservation]:
        return await self._store.open_reservations(not_of=not_of, opened_before=opened_before)

    # -- leases ------------------------------------------------------------------------

    async def _grow(
        self, account_id: str, amount: int, want: int
    ) -> tuple[_Lease | None, ReserveOutcome]:
        """The account's lease with ``want`` free where the account is ample, else at least
        ``amount`` (grown, or taken, by exactly what it misses), or None and the refusal.
        Callers check ``free`` again: other requests may take it meanwhile."""
        lease = self._leases.get(account_id)
        if lease is None:
            lease = self._leases[account_id] = _Lease(
                LEASE_PREFIX + ordered_hex(10), account_id, 0, self._clock()
            )
        if lease.narrow:  # exactly what is missing, beside other requests' growths
            return await self._take(lease, amount, None)
        while lease.growth is not None:  # one wide growth at a time: wait and see
            # every waiter wakes when it ends, in one loop iteration (a lock would hand
            # over one waiter per iteration, and an iteration under load is long)
            await asyncio.shield(lease.growth)
            if self._leases.get(account_id) is not lease:
                return await self._grow(account_id, amount, want)
        if lease.free >= want:
            return lease, ReserveOutcome(None, 0, 0)
        if lease.narrow:
            return await self._take(lease, amount, None)
        lease.growth = asyncio.get_running_loop().create_future()
        # shielded: the growth ends (and its waiters go on) when it is written, not when
        # a caller whose client went away is cancelled
        return await asyncio.shield(self._wide_growth(lease, amount, want))

    async def _wide_growth(
        self, lease: _Lease, amount: int, want: int
    ) -> tuple[_Lease | None, ReserveOutcome]:
        assert lease.growth is not None
        try:
            # lease_requests holds' worth, or twice what is held: it keeps up with the load
            wide = want * max(self._requests, 2 * lease.holds)
            return await self._take(lease, amount, (wide, wide * HEADROOM))
        finally:
            lease.growth.set_result(None)
            lease.growth = None

    async def _take(
        self, lease: _Lease, amount: int, ample: tuple[int, int] | None, *, renew: bool = True
    ) -> tuple[_Lease | None, ReserveOutcome]:
        """Grow ``lease`` by ``ample[0]`` if the account has ``ample[1]`` available, else by
        what ``amount`` misses; None and the refusal when the account cannot cover that.
        A lease closed under us is retired and (``renew``) the account's next one grown."""
        missing = max(amount - lease.free, 0)
        lease.used_at = self._clock()
        if ample is not None and ample[0] <= missing:
            ample = None
        if ample is None and not missing:
            return lease, ReserveOutcome(None, 0, 0)
        # shielded: a caller cancelled (its client gone) after the growth was written
        # must not leave the lease in memory short of what it holds in the database, or
        # without its row's id (that part would never go back but by crash recovery)
        outcome = await asyncio.shield(self._write_growth(lease, missing, ample))
        if outcome.reservation is None:
            if not lease.id:
                self._leases.pop(lease.account_id, None)
            elif outcome.not_open:
                # closed under us (crash recovery took us for dead): a new lease
                self._retire(lease)
                if renew:
                    return await self._grow(lease.account_id, amount, amount)
            return None, ReserveOutcome(
                None, outcome.balance_micros, max(outcome.reserved_micros - lease.free, 0)
            )
        return lease, outcome

    async def _write_growth(
        self, lease: _Lease, missing: int, ample: tuple[int, int] | None
    ) -> ReserveOutcome:
        """Take ``lease``'s first reservation or grow it, and note what was granted."""
        if not lease.id:
            outcome = await self._store.reserve(
                lease.account_id, lease.name, self._instance_id, missing, roomy=ample
            )
        else:
            outcome = await self._store.extend(lease.id, missing, roomy=ample)
        if outcome.reservation is None:
            return outcome
        grown = outcome.granted_micros
        lease.amount += grown
        lease.id = outcome.reservation.id
        if lease.retired:  # retired while its first reservation was being taken
            self._retired.add(lease)
        if ample is not None and grown < ample[0]:
            lease.narrow = True  # not ample: later growths wait for no other
        return outcome

    def _drop(self, hold: _Hold) -> None:
        lease = hold.lease
        lease.held -= hold.amount
        lease.holds -= 1
        lease.used_at = self._clock()

    def _retire(self, lease: _Lease) -> None:
        """Take no new holds from ``lease``; it is closed once its holds have settled."""
        lease.retired = True
        if self._leases.get(lease.account_id) is lease:
            del self._leases[lease.account_id]
        if lease.id:
            self._retired.add(lease)

    def retire_all(self) -> None:
        """Take no new holds from any current lease (crash recovery may have released
        them: this instance was taken for dead); new requests grow new leases."""
        for lease in list(self._leases.values()):
            self._retire(lease)

    async def tidy(self) -> None:
        """Give back idle leases, retire old ones and close retired ones without holds."""
        now = self._clock()
        for lease in list(self._leases.values()):
            if lease.growth is not None or not lease.id:
                continue
            if lease.holds == 0 and now - lease.used_at >= self._idle:
                self._retire(lease)
            elif now - lease.created_at >= self._max_age:
                self._retire(lease)
        for lease in list(self._retired):
            free = lease.free
            if lease.holds and free <= 0:
                continue  # all of it held: given back as its holds settle
            # shielded: a tidying cancelled while the give-back is written (the background
            # round, stopped by close()) must not leave the lease in memory apart from its row
            given = await asyncio.shield(self._give_back(lease, free))
            if given == "failed":  # a database hiccup: the next round tries again
                continue
            # closed: by us, or (refused) by crash recovery. Still open: holds are left, or
            # what they gave back as they settled meanwhile, or what a growth written
            # meanwhile added; the next rounds give it back and close it (a row left
            # holding 0 is open until a give-back of 0 closes it)
            if given != "open":
                self._retired.discard(lease)

    async def _give_back(
        self, lease: _Lease, free: int
    ) -> Literal["open", "closed", "refused", "failed"]:
        """Give ``free`` of ``lease`` back: the lease's state after it in the database
        ("refused": it was closed or short there; "failed": an error, nothing changed)."""
        # gone from the lease before it is written: a hold growing meanwhile (a retired
        # lease's holds may) must grow the lease, not take the part being given back
        lease.amount -= free
        try:
            state = await self._store.shrink_lease(lease.id, free)
        except Exception:
            lease.amount += free
            log.exception("could not give back balance lease %s", lease.id)
            return "failed"
        if state is None:
            lease.amount += free
            return "refused"
        return state

    def start(self) -> None:
        """Tidy in the background (every half idle period, at most once a second)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tidy_forever())

    async def _tidy_forever(self) -> None:
        period = min(self._idle / 2, 1.0)
        while True:
            await asyncio.sleep(period)
            # a round of its own: stopping this task (close) lets a round under way finish
            self._round = asyncio.ensure_future(self.tidy())
            try:
                await asyncio.shield(self._round)
            except Exception:  # never let the leases stop going back
                log.exception("balance lease tidying failed")

    async def close(self) -> None:
        """Stop tidying and give every lease back (call after in-flight requests settled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._round is not None:  # the background round under way, if one is
            with contextlib.suppress(Exception):  # (logged there)
                await self._round
            self._round = None
        for lease in list(self._leases.values()):
            self._retire(lease)
        await self.tidy()

    def leased_micros(self) -> int:
        """What this instance's leases hold in the database (tests, metrics)."""
        return sum(lease.amount for lease in (*self._leases.values(), *self._retired))
