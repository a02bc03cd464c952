"""The hottest money movements on PostgreSQL as one statement each: one round trip.

``MoneyQueries`` writes each movement as a transaction of a few statements, which SQLite
runs back to back in-process at its group commit. On PostgreSQL every statement, and the
``BEGIN`` and ``COMMIT`` around them, is a round trip to the server: a request's
reservation and settlement were nine, each a few tens of microseconds of the gateway's
CPU besides the wait. Here the common case of each is a single statement whose
data-modifying ``WITH`` parts run in one snapshot and commit together, so it is exactly
as atomic as the transaction it replaces:

- ``reserve`` (no spend cap): hold the amount on the account and insert the reservation;
- ``settle`` (the request's own reservation still open, on the debit's account, no spend
  cap and no extra entry): close it, insert the debit and move the account;
- ``settle_leased`` (the lease open, on the debit's account, holding the debit): shrink it,
  insert the debit and move the account.

Each part that writes reads the row the one before it wrote (``closed``), so the
reservation's row is locked before the account's, the order every money transaction
takes. When the common case does not hold, the statement changes nothing and returns no
row, and the caller runs the general transaction, which sorts out the rest (an earlier
debit, a released reservation, a wrong account) as before.

``Settlements`` writes the settlements of one account (or one lease) that come while one
is being written in one statement together, and ``Holds`` the reservations of one
account: a group commit of the account's row (``storage.group_writer``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tollway.storage.base import LedgerEntry, NewEntry, Reservation, ReserveOutcome
from tollway.storage.database import Database
from tollway.storage.group_writer import GroupWriter
from tollway.storage.ledger_columns import (
    ENTRY_COLUMNS,
    ENTRY_FIELDS,
    ENTRY_PLACEHOLDERS,
    entry_values,
)

__all__ = ["Holds", "Settlements", "reserve", "settle_leased", "settle_open"]

_RESERVE = (
    "WITH held AS ("
    " UPDATE accounts SET reserved_micros = reserved_micros + ?"
    " WHERE id = ? AND NOT disabled AND balance_micros - reserved_micros >= ?"
    " RETURNING balance_micros, reserved_micros"
    "), opened AS ("
    " INSERT INTO reservations (id, request_id, account_id, instance_id, amount_micros,"
    " state, created_at) SELECT ?, ?, ?, ?, ?, 'open', ? FROM held"
    ") SELECT balance_micros, reserved_micros FROM held"
)

_RESERVE_MANY = (  # the holds of a batch: their sum on the account, then each one's row
    "WITH held AS ("
    " UPDATE accounts SET reserved_micros = reserved_micros + ?"
    " WHERE id = ? AND NOT disabled AND balance_micros - reserved_micros >= ?"
    " RETURNING balance_micros, reserved_micros"
    "), opened AS ("
    " INSERT INTO reservations (id, request_id, account_id, instance_id, amount_micros,"
    " state, created_at) SELECT r.id, r.request_id, ?, r.instance_id, r.amount, 'open', r.at"
    " FROM unnest(?::text[], ?::text[], ?::text[], ?::bigint[], ?::float8[])"
    " AS r(id, request_id, instance_id, amount, at) WHERE EXISTS (SELECT 1 FROM held)"
    ") SELECT balance_micros, reserved_micros FROM held"
)

# A settlement is: ``closed``, the row(s) it settles against, taken first; ``entry``, its
# debit(s); then ``moved``, the account's row (balance by the debits, ``reserved`` by what
# ``closed`` gave back). Each part reads the one before it, which fixes that lock order.
_OPEN_CLOSED = (
    "WITH closed AS ("
    " UPDATE reservations SET state = 'settled', closed_at = ?"
    " WHERE id = ? AND state = 'open' AND account_id = ? RETURNING amount_micros"
)
# every reservation open on the account, locked in id order, or none is closed
_OPEN_CLOSED_MANY = (
    "WITH target AS ("
    " SELECT id FROM reservations WHERE id = ANY(?::text[]) AND state = 'open'"
    " AND account_id = ? ORDER BY id FOR UPDATE"
    "), closed AS ("
    " UPDATE reservations SET state = 'settled', closed_at = ? FROM target"
    " WHERE reservations.id = target.id AND (SELECT count(*) FROM target) = ?"
    " RETURNING reservations.amount_micros"
)
_LEASE_CLOSED = (  # the lease shrunk by what the settlement(s) give back
    "WITH closed AS ("
    " UPDATE reservations SET amount_micros = amount_micros - ?"
    " WHERE id = ? AND state = 'open' AND account_id = ? AND amount_micros >= ?"
    " RETURNING ?::bigint AS amount_micros"
)
_ONE_DEBIT = (
    "), entry AS ("
    f" INSERT INTO ledger_entries ({ENTRY_COLUMNS}) SELECT {ENTRY_PLACEHOLDERS} FROM closed"
    " RETURNING id, request_id"
)
_TEXT = {"account_id", "kind", "request_id", "model", "deployment", "prices", "note"}
_UNNEST = ", ".join(
    f"?::{'text' if f in _TEXT else 'boolean' if f == 'partial' else 'bigint'}[]"
    for f in ENTRY_FIELDS
)
_DEBITS = (  # one array per column, the insert's time last
    "), entry AS ("
    f" INSERT INTO ledger_entries ({ENTRY_COLUMNS})"
    f" SELECT d.*, ? FROM unnest({_UNNEST}) AS d WHERE EXISTS (SELECT 1 FROM closed)"
    " RETURNING id, request_id"
)
_MOVED = (
    "), moved AS ("
    " UPDATE accounts SET balance_micros = balance_micros + ?,"
    " reserved_micros = reserved_micros - (SELECT sum(amount_micros) FROM closed)"
    " WHERE id = ? AND EXISTS (SELECT 1 FROM closed)"
    ") SELECT id, request_id FROM entry"
)
_SETTLE_OPEN = _OPEN_CLOSED + _ONE_DEBIT + _MOVED
_SETTLE_LEASED = _LEASE_CLOSED + _ONE_DEBIT + _MOVED
_SETTLE_OPEN_MANY = _OPEN_CLOSED_MANY + _DEBITS + _MOVED
_SETTLE_LEASED_MANY = _LEASE_CLOSED + _DEBITS + _MOVED


async def reserve(
    db: Database, reservation: Reservation, available_at_least: int
) -> tuple[int, int] | None:
    """Hold ``reservation.amount_micros`` and insert ``reservation`` if the account has
    ``available_at_least`` available: its (balance, reserved) after, or None (nothing
    changed)."""
    r = reservation
    row = await db.fetchrow(
        _RESERVE, r.amount_micros, r.account_id, available_at_least,
        r.id, r.request_id, r.account_id, r.instance_id, r.amount_micros, r.created_at,
    )  # fmt: skip
    if row is None:
        return None
    return int(row["balance_micros"]), int(row["reserved_micros"])


def _debit_values(debit: NewEntry, now: float) -> tuple[Any, ...]:
    return (*entry_values(debit), now, debit.amount_micros, debit.account_id)


async def settle_open(db: Database, reservation_id: str, debit: NewEntry) -> LedgerEntry | None:
    """Settle a request whose reservation is open on the debit's account: the debit, or
    None when that is not so (nothing changed; the caller's general path decides)."""
    now = time.time()
    row = await db.fetchrow(
        _SETTLE_OPEN, now, reservation_id, debit.account_id, *_debit_values(debit, now)
    )
    return None if row is None else LedgerEntry(id=int(row["id"]), created_at=now, entry=debit)


async def settle_leased(
    db: Database, lease_id: str, debit: NewEntry, shrink: int
) -> LedgerEntry | None:
    """Append a debit against an open lease of the debit's account that holds ``shrink``,
    shrinking it and the account's ``reserved`` by ``shrink``: the debit, or None when
    that is not so (nothing changed)."""
    now = time.time()
    row = await db.fetchrow(
        _SETTLE_LEASED, shrink, lease_id, debit.account_id, shrink, shrink,
        *_debit_values(debit, now),
    )  # fmt: skip
    return None if row is None else LedgerEntry(id=int(row["id"]), created_at=now, entry=debit)


# -- written together: one statement for many --------------------------------------


Fallback = Callable[[str, NewEntry, int], Awaitable[Any]]
_Settlement = tuple[str, NewEntry, int]  # (reservation or lease, debit, what it gives back)


class Settlements:
    """Settlements written together, a group commit on PostgreSQL (``GroupWriter``).

    Settlements share a batch when they move the same account (per-request reservations)
    or draw on the same balance lease. The batch's statement inserts every debit, closes
    the reservations (or shrinks the lease by their sum) and moves the account's balance
    and ``reserved`` by their sums, so a busy account's row is locked and committed once
    per batch, not once per request, and the gateway makes one round trip for it. Each
    caller gets its own debit once the batch has committed. A batch the common case does
    not cover (a reservation no longer open, a lease closed or short, a debit already
    written) changes nothing, and its settlements are written one by one by
    ``fallback``, which sorts out each as before.
    """

    def __init__(self, db: Database, fallback: Fallback, *, leased: bool) -> None:
        self._db = db
        self._leased = leased
        self._writer: GroupWriter[_Settlement] = GroupWriter(
            self._write_batch, lambda s: fallback(*s)
        )

    @property
    def batches(self) -> int:
        return self._writer.batches

    async def settle(self, target: str, debit: NewEntry, shrink: int = 0) -> Any:
        """(the debit, True) once its batch has committed; or what ``fallback`` returns
        for it. ``target``: the reservation, or the lease, it settles against; ``shrink``:
        what that reservation gives back (a lease: the debit and the unspent hold)."""
        key = (target if self._leased else "", debit.account_id)
        return await self._writer.submit(key, (target, debit, shrink))

    async def _write_batch(self, key: Any, batch: list[_Settlement]
                           ) -> list[tuple[LedgerEntry, bool]] | None:
        """One statement for the batch: its debits in order, or None (nothing changed)."""
        account_id = key[1]
        requests = {debit.request_id for _, debit, _ in batch}
        if None in requests or len(requests) < len(batch):
            return None  # the batch's debits are told apart by their request ids
        if len(batch) == 1:
            target, debit, shrink = batch[0]
            if self._leased:
                entry = await settle_leased(self._db, target, debit, shrink)
            else:
                entry = await settle_open(self._db, target, debit)
            return None if entry is None else [(entry, True)]
        debits = [debit for _, debit, _ in batch]
        moved = sum(debit.amount_micros for debit in debits)
        columns = [list(values) for values in zip(*map(entry_values, debits), strict=True)]
        now = time.time()
        if self._leased:
            shrink = sum(s for _, _, s in batch)
            rows = await self._db.fetch(
                _SETTLE_LEASED_MANY, shrink, batch[0][0], account_id, shrink, shrink,
                now, *columns, moved, account_id,
            )  # fmt: skip
        else:
            rows = await self._db.fetch(
                _SETTLE_OPEN_MANY, [target for target, _, _ in batch], account_id, now,
                len(batch), now, *columns, moved, account_id,
            )  # fmt: skip
        if len(rows) != len(batch):
            return None  # the common case does not hold: nothing was written
        ids = {row["request_id"]: int(row["id"]) for row in rows}
        return [(LedgerEntry(id=ids[d.request_id], created_at=now, entry=d), True)
                for d in debits]  # fmt: skip


Hold = tuple[Reservation, int]  # (the reservation, the available balance it needs)
HoldAlone = Callable[[list[Hold]], Awaitable[ReserveOutcome]]


class Holds:
    """Reservations of one account written together, a group commit on PostgreSQL.

    A reservation comes as its tries in order (a roomy hold, then the plain one), each
    a hold and the available balance it needs. A batch takes every reservation's first
    try in arrival order: it holds their sum on the account if the account can cover
    each of them in turn (its available balance is at least, over the batch, the most
    that any one needs plus what those before it hold) and inserts them all, in one
    statement; so it changes exactly what they would, written one after another, when
    every one of them is granted. Otherwise it changes nothing and each is tried alone
    by ``alone`` (all its tries, one statement each), so a refusal is as it would be
    without the others. Each caller gets the balance and ``reserved`` as they were just
    after its own hold.
    """

    def __init__(self, db: Database, alone: HoldAlone) -> None:
        self._db = db
        self._writer: GroupWriter[list[Hold]] = GroupWriter(self._write_batch, alone)

    @property
    def batches(self) -> int:
        return self._writer.batches

    async def reserve(self, tries: list[Hold]) -> ReserveOutcome:
        """The first try granted (in its batch), or ``alone``'s outcome for all of them."""
        outcome: ReserveOutcome = await self._writer.submit(tries[0][0].account_id, tries)
        return outcome

    async def _write_batch(self, account_id: Any, batch: list[list[Hold]]
                           ) -> list[ReserveOutcome] | None:
        if len(batch) == 1:
            return None  # tried alone, as it would be without a batch
        first = [tries[0][0] for tries in batch]
        if len({r.request_id for r in first}) < len(first):
            return None  # a second reservation of a request fails alone
        total = needed = 0
        for tries in batch:
            reservation, available_at_least = tries[0]
            needed = max(needed, total + available_at_least)
            total += reservation.amount_micros
        row = await self._db.fetchrow(
            _RESERVE_MANY, total, account_id, needed, account_id,
            [r.id for r in first], [r.request_id for r in first],
            [r.instance_id for r in first], [r.amount_micros for r in first],
            [r.created_at for r in first],
        )  # fmt: skip
        if row is None:
            return None
        balance, reserved = int(row["balance_micros"]), int(row["reserved_micros"]) - total
        outcomes = []
        for r in first:
            reserved += r.amount_micros
            outcomes.append(ReserveOutcome(r, balance, reserved, granted_micros=r.amount_micros))
        return outcomes
