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
is being written in one statement together: a group commit of the account's row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tollway.storage.base import LedgerEntry, NewEntry, Reservation
from tollway.storage.database import Database
from tollway.storage.ledger_columns import (
    ENTRY_COLUMNS,
    ENTRY_FIELDS,
    ENTRY_PLACEHOLDERS,
    entry_values,
)

__all__ = ["Settlements", "reserve", "settle_leased", "settle_open"]

log = logging.getLogger(__name__)

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


# -- settlements written together: one statement for many -----------------------------


class _Pending:
    __slots__ = ("target", "debit", "shrink", "future")

    def __init__(self, target: str, debit: NewEntry, shrink: int,
                 future: asyncio.Future[Any]) -> None:
        self.target = target  # the reservation (or lease) it settles against
        self.debit = debit
        self.shrink = shrink  # what that reservation gives back (a lease: debit + give-back)
        self.future = future


Fallback = Callable[[str, NewEntry, int], Awaitable[Any]]


class Settlements:
    """Settlements written together, a group commit on PostgreSQL.

    Settlements share a batch when they move the same account (per-request reservations)
    or draw on the same balance lease. The first of a batch is written at once; those
    that come while its statement runs wait and are then written together in one
    statement: every debit inserted, the reservations closed (or the lease shrunk by
    their sum) and the account's balance and ``reserved`` moved by their sums. So a busy
    account's row is locked and committed once per batch, not once per request, and the
    gateway makes one round trip for it. Each caller gets its own debit once the batch
    has committed. A batch the common case does not cover (a reservation no longer open,
    a lease closed or short, a debit already written) changes nothing, and its
    settlements are written one by one by ``fallback``, which sorts out each as before.
    """

    def __init__(self, db: Database, fallback: Fallback, *, leased: bool) -> None:
        self._db = db
        self._fallback = fallback
        self._leased = leased
        self._queues: dict[tuple[str, str], list[_Pending]] = {}  # key → waiting
        self.batches = 0  # statements written (for tests and measurement)

    async def settle(self, target: str, debit: NewEntry, shrink: int = 0) -> Any:
        """(the debit, True) once its batch has committed; or what ``fallback`` returns
        for it. ``target``: the reservation, or the lease, it settles against."""
        key = (target if self._leased else "", debit.account_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        item = _Pending(target, debit, shrink, future)
        queue = self._queues.get(key)
        if queue is None:  # nothing being written for this key: write now, collect the rest
            self._queues[key] = []
            task = asyncio.get_running_loop().create_task(self._write(key, [item]))
            task.add_done_callback(_surface)
        else:
            queue.append(item)
        # a caller cancelled while it waits leaves its settlement to the batch
        return await asyncio.shield(future)

    async def _write(self, key: tuple[str, str], batch: list[_Pending]) -> None:
        try:
            while batch:
                try:
                    entries = await self._write_batch(key[1], batch)
                except Exception:  # noqa: BLE001 (each settlement then meets its own error)
                    entries = None
                if entries is None:
                    for item in batch:
                        await self._settle_alone(item)
                else:
                    for item, entry in zip(batch, entries, strict=True):
                        if not item.future.done():
                            item.future.set_result((entry, True))
                batch = self._queues[key]
                self._queues[key] = []
        finally:  # empty unless the writer itself was stopped (cancelled at shutdown)
            for item in batch + self._queues.pop(key, []):
                if not item.future.done():
                    item.future.set_exception(RuntimeError("settlement writer stopped"))

    async def _settle_alone(self, item: _Pending) -> None:
        try:
            result = await self._fallback(item.target, item.debit, item.shrink)
        except Exception as exc:  # noqa: BLE001 (handed to its caller)
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)

    async def _write_batch(self, account_id: str, batch: list[_Pending]
                           ) -> list[LedgerEntry] | None:
        """One statement for the batch: its debits in order, or None (nothing changed)."""
        requests = {item.debit.request_id for item in batch}
        if None in requests or len(requests) < len(batch):
            return None  # the batch's debits are told apart by their request ids
        self.batches += 1
        if len(batch) == 1:
            one = batch[0]
            if self._leased:
                entry = await settle_leased(self._db, one.target, one.debit, one.shrink)
            else:
                entry = await settle_open(self._db, one.target, one.debit)
            return None if entry is None else [entry]
        moved = sum(item.debit.amount_micros for item in batch)
        columns = [list(values) for values in zip(*(entry_values(i.debit) for i in batch),
                                                   strict=True)]
        now = time.time()
        if self._leased:
            shrink = sum(item.shrink for item in batch)
            rows = await self._db.fetch(
                _SETTLE_LEASED_MANY, shrink, batch[0].target, account_id, shrink, shrink,
                now, *columns, moved, account_id,
            )  # fmt: skip
        else:
            rows = await self._db.fetch(
                _SETTLE_OPEN_MANY, [item.target for item in batch], account_id, now,
                len(batch), now, *columns, moved, account_id,
            )  # fmt: skip
        if len(rows) != len(batch):
            return None  # the common case does not hold: nothing was written
        ids = {row["request_id"]: int(row["id"]) for row in rows}
        return [LedgerEntry(id=ids[i.debit.request_id], created_at=now, entry=i.debit)
                for i in batch]  # fmt: skip


def _surface(task: asyncio.Task[None]) -> None:
    """A batch writer's own failure (never a settlement's: those go to their callers)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("settlement writer failed", exc_info=task.exception())
