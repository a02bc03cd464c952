"""Spend-cap counters in SQL, run inside the reservation's own transaction.

``MoneyQueries.reserve`` calls ``hold_caps`` after the account's conditional update,
so a request is admitted only if the balance *and* every cap (``Cap``, made by
``tollway.limits``) can take its worst case. Each cap is one conditional ``UPDATE``
(``spent + reserved + amount <= cap``) on its counter row: a row lock on PostgreSQL,
the database write lock on SQLite, so concurrent requests on any instance cannot
overshoot a cap. Settlement moves the hold into ``spent`` (the actual debit, never
more than the hold); an orphan release gives the hold back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tollway.storage.database import Database, Tx

__all__ = [
    "Cap",
    "CapQueries",
    "CapState",
    "extend_caps",
    "hold_caps",
    "read_caps",
    "settle_caps",
]


@dataclass(frozen=True, slots=True)
class Cap:
    """One cap a request's reservation must fit in."""

    scope: str  # "key" | "account"
    subject_id: str
    period: str  # daily | weekly | monthly | total
    period_start: float
    resets_at: float | None
    cap_micros: int

    @property
    def label(self) -> str:
        return f"{self.scope}_spend_cap"

    def describe(self) -> str:
        usd = Decimal(self.cap_micros) / 1_000_000
        when = (
            "never resets" if self.resets_at is None
            else "resets " + datetime.fromtimestamp(self.resets_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        )  # fmt: skip
        return f"the {self.scope}'s {self.period} spend cap of ${usd:f} ({when})"


@dataclass(frozen=True, slots=True)
class CapState:
    """A cap with what its period has spent and holds."""

    cap: Cap
    spent_micros: int
    reserved_micros: int

    @property
    def remaining_micros(self) -> int:
        return max(self.cap.cap_micros - self.spent_micros - self.reserved_micros, 0)


_PK = "scope = ? AND subject_id = ? AND period = ? AND period_start = ?"


async def hold_caps(tx: Tx, reservation_id: str, caps: Sequence[Cap], amount: int) -> Cap | None:
    """Hold ``amount`` against every cap (in order); the first that cannot take it, else None.

    On refusal the caller must roll the transaction back (earlier holds were written).
    """
    holds: list[Any] = []
    for cap in caps:
        if amount > cap.cap_micros:
            return cap
        pk = (cap.scope, cap.subject_id, cap.period, cap.period_start)
        row = await tx.fetchrow(  # one statement: the period's first hold creates the row
            "INSERT INTO spend_counters (scope, subject_id, period, period_start, reserved_micros)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, subject_id, period, period_start)"
            " DO UPDATE SET reserved_micros = spend_counters.reserved_micros"
            " + excluded.reserved_micros"
            " WHERE spend_counters.spent_micros + spend_counters.reserved_micros <= ?"
            " RETURNING scope",
            *pk, amount, cap.cap_micros - amount,
        )  # fmt: skip
        if row is None:
            return cap
        holds += [reservation_id, *pk, amount]
    if holds:
        await tx.execute(
            "INSERT INTO spend_holds (reservation_id, scope, subject_id, period, period_start,"
            " amount_micros) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * (len(holds) // 6)),
            *holds,
        )
    return None


async def extend_caps(
    tx: Tx, reservation_id: str, caps: Sequence[Cap], amount: int
) -> Cap | None:
    """Grow this reservation's holds by ``amount``; the first cap refusing, else None."""
    for cap in caps:
        hold = await tx.fetchrow(
            "UPDATE spend_holds SET amount_micros = amount_micros + ?"
            " WHERE reservation_id = ? AND scope = ? RETURNING subject_id, period, period_start",
            amount, reservation_id, cap.scope,
        )  # fmt: skip
        if hold is None:
            continue
        row = await tx.fetchrow(
            "UPDATE spend_counters SET reserved_micros = reserved_micros + ?"
            f" WHERE {_PK} AND spent_micros + reserved_micros <= ? RETURNING scope",
            amount, cap.scope, hold["subject_id"], hold["period"], hold["period_start"],
            cap.cap_micros - amount,
        )  # fmt: skip
        if row is None:
            return cap
    return None


async def settle_caps(tx: Tx, reservation_id: str, spent_micros: int) -> None:
    """Close this reservation's holds: each hold leaves ``reserved``; ``spent_micros``
    (never more than the hold) joins ``spent``."""
    holds = await tx.fetch(
        "DELETE FROM spend_holds WHERE reservation_id = ?"
        " RETURNING scope, subject_id, period, period_start, amount_micros",
        reservation_id,
    )
    for h in holds:
        held = int(h["amount_micros"])
        await tx.execute(
            "UPDATE spend_counters SET reserved_micros = reserved_micros - ?,"
            f" spent_micros = spent_micros + ? WHERE {_PK}",
            held, min(max(spent_micros, 0), held),
            h["scope"], h["subject_id"], h["period"], h["period_start"],
        )  # fmt: skip


async def read_caps(tx: Tx, caps: Sequence[Cap]) -> list[CapState]:
    """Each cap with its period's spent and reserved figures."""
    out = []
    for cap in caps:
        row = await tx.fetchrow(
            f"SELECT spent_micros, reserved_micros FROM spend_counters WHERE {_PK}",
            cap.scope, cap.subject_id, cap.period, cap.period_start,
        )  # fmt: skip
        spent, reserved = (int(row["spent_micros"]), int(row["reserved_micros"])) if row else (0, 0)
        out.append(CapState(cap, spent, reserved))
    return out


async def _audit_caps(db: Database) -> list[tuple[str, str]]:
    """(subject, message) for each spend-cap inconsistency: a counter's held amount that
    differs from its open holds, or a hold that is not exactly its open reservation's."""
    out: list[tuple[str, str]] = []
    rows = await db.fetch(
        "SELECT c.scope, c.subject_id, c.period, c.period_start, c.reserved_micros,"
        " COALESCE(SUM(h.amount_micros), 0) AS held FROM spend_counters c"
        " LEFT JOIN spend_holds h ON h.scope = c.scope AND h.subject_id = c.subject_id"
        " AND h.period = c.period AND h.period_start = c.period_start"
        " GROUP BY c.scope, c.subject_id, c.period, c.period_start, c.reserved_micros"
        " HAVING c.reserved_micros <> COALESCE(SUM(h.amount_micros), 0)"
    )
    for r in rows:
        out.append((f"{r['scope']}:{r['subject_id']}",
                    f"{r['period']} spend cap counter holds {r['reserved_micros']} micro-USD but "
                    f"its open holds sum to {r['held']}"))  # fmt: skip
    rows = await db.fetch(
        "SELECT h.reservation_id, h.scope, h.amount_micros, r.state, r.amount_micros AS reserved"
        " FROM spend_holds h LEFT JOIN reservations r ON r.id = h.reservation_id"
        " WHERE r.id IS NULL OR r.state <> 'open' OR r.amount_micros <> h.amount_micros"
    )
    for r in rows:
        out.append((str(r["reservation_id"]),
                    f"{r['scope']} spend-cap hold of {r['amount_micros']} micro-USD for a "
                    f"reservation that is {r['state'] or 'missing'} ({r['reserved']} reserved)"))
    return out


class CapQueries:
    """Spend-cap reads for the APIs and the audit (mixed into ``SqlStorage``)."""

    db: Database

    async def cap_states(self, caps: Sequence[Cap]) -> list[CapState]:
        async with self.db.transaction() as tx:
            return await read_caps(tx, caps)

    async def spend_cap_mismatches(self) -> list[tuple[str, str]]:
        """(subject, message) per counter out of step with its holds, or hold with its
        reservation."""
        return await _audit_caps(self.db)
