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

Each part that writes reads the row the one before it wrote (``FROM closed``), so the
reservation's row is locked before the account's, the order every money transaction
takes. When the common case does not hold, the statement changes nothing and returns no
row, and the caller runs the general transaction, which sorts out the rest (an earlier
debit, a released reservation, a wrong account) as before.
"""

from __future__ import annotations

import time
from typing import Any

from tollway.storage.base import LedgerEntry, NewEntry, Reservation
from tollway.storage.database import Database
from tollway.storage.ledger_columns import ENTRY_COLUMNS, ENTRY_PLACEHOLDERS, entry_values

__all__ = ["reserve", "settle_leased", "settle_open"]

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

# the debit, once the reservation's row (``closed``) is taken; then the account's row
_DEBIT_AND_MOVE = (
    "), entry AS ("
    f" INSERT INTO ledger_entries ({ENTRY_COLUMNS}) SELECT {ENTRY_PLACEHOLDERS} FROM closed"
    " RETURNING id"
    "), moved AS ("
    " UPDATE accounts SET balance_micros = balance_micros + ?,"
    " reserved_micros = reserved_micros - closed.amount_micros"
    " FROM closed WHERE accounts.id = ?"
    ") SELECT id FROM entry"
)
_SETTLE_OPEN = (
    "WITH closed AS ("
    " UPDATE reservations SET state = 'settled', closed_at = ?"
    " WHERE id = ? AND state = 'open' AND account_id = ? RETURNING amount_micros"
    + _DEBIT_AND_MOVE
)
_SETTLE_LEASED = (
    "WITH closed AS ("
    " UPDATE reservations SET amount_micros = amount_micros - ?"
    " WHERE id = ? AND state = 'open' AND account_id = ? AND amount_micros >= ?"
    " RETURNING ?::bigint AS amount_micros"
    + _DEBIT_AND_MOVE
)


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
