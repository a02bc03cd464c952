"""Money movements in SQL: the ledger and reservations, for both dialects.

Each movement (credit, reservation, extension, settlement, orphan release) is one
transaction that appends to ``ledger_entries`` and adjusts the cached
``accounts.balance_micros`` / ``reserved_micros`` together, so
``balance == sum(entries)`` and ``reserved == sum(open reservations)`` hold after
every commit (``tollway audit`` checks both). Reserving and extending are one
conditional ``UPDATE`` (``balance − reserved ≥ amount``): a row lock on PostgreSQL,
the write lock of ``BEGIN IMMEDIATE`` on SQLite, so no two requests can both take
the last of a balance.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal

from tollway.bounds import MAX_MONEY_MICROS
from tollway.ids import ordered_hex, random_hex
from tollway.storage.base import (
    BalanceOutOfRange,
    LedgerEntry,
    NewEntry,
    Reservation,
    ReserveOutcome,
)
from tollway.storage.database import Database, Tx
from tollway.storage.ledger_columns import (
    ENTRY_COLUMNS,
    ENTRY_FIELDS,
    ENTRY_PLACEHOLDERS,
    entry_values,
)
from tollway.storage.sql_audit import read_micros

if TYPE_CHECKING:  # PostgreSQL's batches (``pg_money``) are loaded only on PostgreSQL
    from tollway.storage import pg_money

__all__ = ["ENTRY_COLUMNS", "MoneyQueries", "new_id"]

# hold an amount (1st) against account (2nd) if at least the 3rd is available
_HOLD = (
    "UPDATE accounts SET reserved_micros = reserved_micros + ?"
    " WHERE id = ? AND NOT disabled AND balance_micros - reserved_micros >= ?"
)


async def _hold(
    tx: Tx, amount: int, account_id: str, available_at_least: int
) -> dict[str, Any] | None:
    """``_HOLD``: the account's balance and reserved amount after it, or None if refused."""
    return await tx.update_returning(
        _HOLD, amount, account_id, available_at_least,
        returning="balance_micros, reserved_micros", table="accounts", row_id=account_id,
    )  # fmt: skip


async def _held(
    tx: Tx, amount: int, account_id: str, available_at_least: int, figures: bool
) -> tuple[int, int] | None:
    """``_HOLD``: (balance, reserved) after it — (0, 0) unless ``figures`` asks for them
    — or None if refused."""
    if figures:
        row = await _hold(tx, amount, account_id, available_at_least)
        return None if row is None else (int(row["balance_micros"]), int(row["reserved_micros"]))
    changed = await tx.execute(_HOLD, amount, account_id, available_at_least)
    return (0, 0) if changed else None


def new_id(prefix: str) -> str:
    return f"{prefix}_{random_hex(10)}"


def new_reservation_id() -> str:
    """Time-ordered (``tollway.ids``), so the rows of a group commit share index pages."""
    return "res_" + ordered_hex(10)


def _entry(row: dict[str, Any]) -> LedgerEntry:
    fields = {k: row[k] for k in ENTRY_FIELDS}
    fields["partial"] = bool(fields["partial"])
    return LedgerEntry(id=int(row["id"]), created_at=row["created_at"], entry=NewEntry(**fields))


def _reservation(row: dict[str, Any]) -> Reservation:
    return Reservation(
        id=row["id"],
        request_id=row["request_id"],
        account_id=row["account_id"],
        instance_id=row["instance_id"],
        amount_micros=read_micros(row["amount_micros"]),
        state=row["state"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )


async def _append(tx: Tx, e: NewEntry, *, move_balance: bool = True) -> LedgerEntry:
    """Insert one entry and (unless already done) move the account's cached balance."""
    now = time.time()
    entry_id = await tx.insert(
        f"INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES ({ENTRY_PLACEHOLDERS})",
        *entry_values(e), now,
    )  # fmt: skip
    if e.amount_micros and move_balance:
        await tx.execute(
            "UPDATE accounts SET balance_micros = balance_micros + ? WHERE id = ?",
            e.amount_micros,
            e.account_id,
        )
    return LedgerEntry(id=entry_id, created_at=now, entry=e)


async def _close_reservation(
    tx: Tx, reservation_id: str, state: Literal["settled", "released"], *, give_back: bool = True
) -> dict[str, Any] | None:
    """Mark an open reservation closed and (unless the caller does it in its own update of
    the account) give its amount back; None if not open."""
    row = await tx.update_returning(
        "UPDATE reservations SET state = ?, closed_at = ? WHERE id = ? AND state = 'open'",
        state, time.time(), reservation_id,
        returning="account_id, request_id, amount_micros", table="reservations",
        row_id=reservation_id,
    )  # fmt: skip
    if row is not None and give_back:
        await _give_back(tx, row)
    return row


async def _close_held(
    tx: Tx, reservation_id: str, account_id: str, amount_micros: int
) -> dict[str, Any] | None:
    """Settle an open reservation that is the caller's account's and holds
    ``amount_micros``, as the caller expects: the row it closes is then known, so on SQLite
    it is not read back (``update_returning`` there is the update and a ``SELECT``: one
    statement of a settlement's four). None when no row matched (not open, or other
    figures): ``_close_reservation`` then closes and reads it as before."""
    changed = await tx.execute(
        "UPDATE reservations SET state = 'settled', closed_at = ?"
        " WHERE id = ? AND state = 'open' AND account_id = ? AND amount_micros = ?",
        time.time(), reservation_id, account_id, amount_micros,
    )  # fmt: skip
    if changed != 1:
        return None
    return {"account_id": account_id, "amount_micros": amount_micros}


async def _give_back(tx: Tx, reservation: dict[str, Any]) -> None:
    """Take a closed reservation's amount off its account's ``reserved_micros``."""
    await tx.execute(
        "UPDATE accounts SET reserved_micros = reserved_micros - ? WHERE id = ?",
        int(reservation["amount_micros"]),
        reservation["account_id"],
    )


async def _balance(tx: Tx, account_id: str) -> tuple[int, int]:
    row = await tx.fetchrow(
        "SELECT balance_micros, reserved_micros FROM accounts WHERE id = ?", account_id
    )
    if row is None:
        return 0, 0
    return read_micros(row["balance_micros"]), read_micros(row["reserved_micros"])


class _Refused(Exception):
    """Rolls an extension back (the account could not cover it)."""


class MoneyQueries:
    """The ledger and reservations (mixed into ``SqlStorage``)."""

    db: Database

    # -- ledger -----------------------------------------------------------------

    async def append(self, entry: NewEntry) -> LedgerEntry:
        """Append an entry; a credit or adjustment only within the balance's range.

        The balance may not pass ``MAX_MONEY_MICROS``, and a negative adjustment may
        not take ``balance - reserved`` below zero (the open reservations could then
        settle into an overdraft). Out of range: ``BalanceOutOfRange``, nothing written.
        The bounds are compared without SQL arithmetic on the stored value, so even a
        corrupt balance cannot overflow here.
        """
        amount = entry.amount_micros
        async with self.db.transaction() as tx:
            if entry.kind not in ("credit", "adjustment") or not amount:
                return await _append(tx, entry)
            if amount > 0:
                condition, bound = "balance_micros <= ?", MAX_MONEY_MICROS - amount
            else:
                condition, bound = "balance_micros - reserved_micros >= ?", -amount
            moved = await tx.fetchrow(
                "UPDATE accounts SET balance_micros = balance_micros + ?"
                f" WHERE id = ? AND {condition} RETURNING id",
                amount,
                entry.account_id,
                bound,
            )
            if moved is None:
                raise BalanceOutOfRange(
                    f"a balance may not exceed {MAX_MONEY_MICROS // 1_000_000} USD"
                    if amount > 0
                    else "an adjustment may not take the available balance (balance minus "
                    "what requests in flight have reserved) below zero"
                )
            return await _append(tx, entry, move_balance=False)

    async def entries(
        self, account_id: str, *, before: int | None = None, limit: int = 100
    ) -> list[LedgerEntry]:
        """Newest first; pass the last id seen as ``before`` for the next page."""
        if before is None:
            rows = await self.db.fetch(
                "SELECT * FROM ledger_entries WHERE account_id = ? ORDER BY id DESC LIMIT ?",
                account_id,
                limit,
            )
        else:
            rows = await self.db.fetch(
                "SELECT * FROM ledger_entries WHERE account_id = ? AND id < ?"
                " ORDER BY id DESC LIMIT ?",
                account_id,
                before,
                limit,
            )
        return [_entry(r) for r in rows]

    # -- reservations -----------------------------------------------------------

    async def reserve(
        self, account_id: str, request_id: str, instance_id: str, amount_micros: int,
        *, caps: Sequence[Any] = (), roomy: tuple[int, int] | None = None,
        early: bool = False, figures: bool = True,
    ) -> ReserveOutcome:
        """Hold ``amount_micros`` against the balance and, in the same transaction, against
        every spend cap in ``caps`` (``tollway.storage.sql_caps.Cap``); all or nothing.

        ``roomy = (larger, available_at_least)``: hold ``larger`` instead when the
        account's available balance is at least ``available_at_least`` (and ``larger``);
        else ``amount_micros`` as usual. One more statement only when it is not.

        ``early``: on SQLite, a hold that can be decided at once in the open group is
        returned before its commit, with ``committed`` to await for it (the caller calls
        the upstream meanwhile and delivers nothing before). A refusal is asked again in
        its turn, after the transactions queued before it (one of them may free the
        balance), so it is never told early.

        ``figures=False``: the caller needs the account's balance and reserved amount only
        if the hold is refused; after a success they are then 0 on SQLite, where they would
        be one ``SELECT`` more (PostgreSQL's ``RETURNING`` has them at no cost).
        """
        now = time.time()
        if not caps and self.db.dialect == "postgres":  # one round trip a try, or a batch
            tries = [(amount_micros, amount_micros)]
            if roomy is not None:
                tries.insert(0, (roomy[0], max(roomy)))
            holds = [(Reservation(new_reservation_id(), request_id, account_id, instance_id,
                                  amount, "open", now), available_at_least)
                     for amount, available_at_least in tries]  # fmt: skip
            batches = getattr(self, "_holds", None)
            if batches is None:
                from tollway.storage import pg_money

                batches = self._holds = pg_money.Holds(self.db, self._reserve_alone)
            return await batches.reserve(holds)

        figures = figures or self.db.dialect != "sqlite"

        async def body(tx: Tx) -> ReserveOutcome:
            amount, row = amount_micros, None
            if roomy is not None:
                row = await _held(tx, roomy[0], account_id, max(roomy), figures)
                if row is not None:
                    amount = roomy[0]
            if row is None:
                row = await _held(tx, amount, account_id, amount, figures)
            if row is None:
                return ReserveOutcome(None, *await _balance(tx, account_id))
            reservation = Reservation(
                new_reservation_id(), request_id, account_id, instance_id, amount,
                "open", now,
            )  # fmt: skip
            await tx.execute(
                "INSERT INTO reservations (id, request_id, account_id, instance_id,"
                " amount_micros, state, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)",
                reservation.id, request_id, account_id, instance_id, amount, now,
            )  # fmt: skip
            if caps:
                from tollway.storage.sql_caps import hold_caps

                refused = await hold_caps(tx, reservation.id, caps, amount)
                if refused is not None:
                    raise _Refused(account_id, refused)  # rolls every hold back
            return ReserveOutcome(reservation, *row, granted_micros=amount)

        run_early = getattr(self.db, "run_early", None) if early else None
        if run_early is not None:
            try:
                ran = run_early(body)
            except Exception:  # noqa: BLE001 (a refusal or an error: asked again in turn)
                ran = None
            if ran is not None:
                outcome: ReserveOutcome = ran[0]
                if outcome.reservation is not None:
                    return dataclasses.replace(outcome, committed=ran[1], recorded=ran[2])
                ran[1].cancel()  # nobody waits for a refusal's commit (it wrote nothing)
                ran[2].cancel()
        try:
            return await self.db.run(body)
        except _Refused as refused:
            async with self.db.transaction() as tx:
                balance, reserved = await _balance(tx, account_id)
            return ReserveOutcome(None, balance, reserved, refused_cap=refused.args[1])

    async def _reserve_alone(self, holds: list[pg_money.Hold]) -> ReserveOutcome:
        """A reservation without spend caps on PostgreSQL, alone: one statement a try."""
        from tollway.storage import pg_money

        for reservation, available_at_least in holds:
            held = await pg_money.reserve(self.db, reservation, available_at_least)
            if held is not None:
                return ReserveOutcome(reservation, *held,
                                      granted_micros=reservation.amount_micros)  # fmt: skip
        return ReserveOutcome(None, *await _balance(self.db, holds[0][0].account_id))

    async def extend(
        self, reservation_id: str, amount_micros: int, *, caps: Sequence[Any] = (),
        roomy: tuple[int, int] | None = None,
    ) -> ReserveOutcome:
        """Grow an open reservation by ``amount_micros`` if the account can cover it.

        One conditional update, like ``reserve``; on refusal nothing changes and
        ``reservation`` is None (and ``not_open`` when the reservation is closed). ``roomy`` as in
        ``reserve``: grow by ``roomy[0]`` instead while ``roomy[1]`` is available.
        """
        async def body(tx: Tx) -> ReserveOutcome:
            # the reservation's row before the account's, as settlement takes them
            first = roomy[0] if roomy is not None else amount_micros
            res = await tx.fetchrow(
                "UPDATE reservations SET amount_micros = amount_micros + ?"
                " WHERE id = ? AND state = 'open' RETURNING *",
                first,
                reservation_id,
            )
            if res is None:
                raise _Refused(None)
            account_id = res["account_id"]
            amount = first
            row = await _hold(tx, first, account_id, max(roomy or (first,)))
            if row is None and roomy is not None:
                amount = amount_micros  # not ample for the roomy growth: the plain one
                res = await tx.fetchrow(
                    "UPDATE reservations SET amount_micros = amount_micros - ?"
                    " WHERE id = ? RETURNING *",
                    first - amount,
                    reservation_id,
                )
                assert res is not None
                row = await _hold(tx, amount, account_id, amount)
            if row is None:
                raise _Refused(account_id)
            if caps:
                from tollway.storage.sql_caps import extend_caps

                refused = await extend_caps(tx, reservation_id, caps, amount)
                if refused is not None:
                    raise _Refused(res["account_id"], refused)
            return ReserveOutcome(
                _reservation(res), int(row["balance_micros"]), int(row["reserved_micros"]),
                granted_micros=amount,
            )

        try:
            return await self.db.run(body)
        except _Refused as refused:
            account_id = refused.args[0]
            if account_id is None:
                return ReserveOutcome(None, 0, 0, not_open=True)
            async with self.db.transaction() as tx:
                balance, reserved = await _balance(tx, account_id)
            cap = refused.args[1] if len(refused.args) > 1 else None
            return ReserveOutcome(None, balance, reserved, refused_cap=cap)

    async def settle(
        self, reservation_id: str | None, debit: NewEntry, extra: Sequence[NewEntry] = (),
        *, capped: bool = False, held_micros: int | None = None,
    ) -> LedgerEntry | None:
        """Close the reservation and append the debit (and ``extra`` entries, e.g. a
        ``provider_overage`` line) atomically; None if the request is already debited.
        ``capped``: the reservation holds spend caps, which the debit moves to spent.
        ``held_micros``: what the caller knows the reservation holds (its amount after
        any extensions), if it does: see ``_close_held``.

        Three statements when the reservation was open: close it, insert the debit,
        and one update of the account that gives the reservation back and moves the
        balance (then, when ``capped``, the spend counters: the account's row first, as
        in every money transaction). Only when it was not open (already settled, or
        released by crash recovery) is the ledger searched for an earlier debit of the
        request; the unique index ``ledger_one_debit`` forbids a second one either way.
        On PostgreSQL the common case is one statement, shared by the settlements of the
        account that come while one is being written (``pg_money.Settlements``).
        """
        if (reservation_id is not None and not capped and not extra
                and self.db.dialect == "postgres"):
            batches = getattr(self, "_open_settlements", None)
            if batches is None:
                from tollway.storage import pg_money

                batches = self._open_settlements = pg_money.Settlements(
                    self.db, self._settle_open_alone, leased=False
                )
            entry: LedgerEntry | None
            entry, _ = await batches.settle(reservation_id, debit)
            return entry
        return await self._settle_alone(reservation_id, debit, extra, capped, held_micros)

    async def _settle_open_alone(
        self, reservation_id: str, debit: NewEntry, _shrink: int
    ) -> tuple[LedgerEntry | None, bool]:
        return await self._settle_alone(reservation_id, debit, (), False), True

    async def _settle_alone(
        self, reservation_id: str | None, debit: NewEntry, extra: Sequence[NewEntry],
        capped: bool, held_micros: int | None = None,
    ) -> LedgerEntry | None:
        """``settle`` in one transaction of its own."""
        sqlite = self.db.dialect == "sqlite"

        async def body(tx: Tx) -> LedgerEntry | None:
            closed = None
            if reservation_id is not None:
                if held_micros is not None and sqlite:
                    closed = await _close_held(tx, reservation_id, debit.account_id, held_micros)
                if closed is None:
                    closed = await _close_reservation(
                        tx, reservation_id, "settled", give_back=False
                    )
            if closed is None and await tx.fetchrow(
                "SELECT id FROM ledger_entries WHERE request_id = ? AND kind = 'debit'",
                debit.request_id,
            ):
                return None
            if closed is not None and closed["account_id"] == debit.account_id:
                entry = await _append(tx, debit, move_balance=False)
                await tx.execute(
                    "UPDATE accounts SET balance_micros = balance_micros + ?,"
                    " reserved_micros = reserved_micros - ? WHERE id = ?",
                    debit.amount_micros,
                    int(closed["amount_micros"]),
                    debit.account_id,
                )
            else:
                if closed is not None:
                    await _give_back(tx, closed)
                entry = await _append(tx, debit)
            if capped and closed is not None:
                # only now: every money transaction locks the account's row before its spend
                # counters (reserve, extend and release do), so none waits on another for
                # one while holding the other (a PostgreSQL deadlock, and a 500)
                from tollway.storage.sql_caps import settle_caps

                assert reservation_id is not None
                await settle_caps(tx, reservation_id, -debit.amount_micros)
            for other in extra:
                await _append(tx, other)
            return entry

        return await self.db.run(body)

    # -- balance leases (tollway.billing.balance_lease) ------------------------------

    async def settle_leased(
        self, lease_id: str, debit: NewEntry, extra: Sequence[NewEntry] = (),
        give_back: int = 0,
    ) -> tuple[LedgerEntry | None, bool]:
        """Append a request's debit (and ``extra``) against an instance's balance lease, a
        reservation that many requests draw on: the lease and the account's ``reserved``
        shrink by the debit (and by ``give_back`` more, the unspent part of a hold that
        goes back to the account at once) and the balance moves by the debit, in one
        transaction. Returns (the debit, or None if the request is already debited;
        whether the lease was open).

        The lease must still hold the debit (``amount_micros >= debit``): the instance
        never lets its requests hold more than its lease. A lease no longer open
        (released by crash recovery) is settled as ``settle`` settles a request whose
        reservation was released, and the caller must take no more holds from it.

        On PostgreSQL the settlements of one lease that come while one of them is being
        written are written together, in one statement (``pg_money.Settlements``).
        """
        shrink = -debit.amount_micros + give_back
        if not extra and self.db.dialect == "postgres":  # many a statement: a group commit
            batches = getattr(self, "_lease_settlements", None)
            if batches is None:
                from tollway.storage import pg_money

                batches = self._lease_settlements = pg_money.Settlements(
                    self.db, self._settle_leased_alone, leased=True
                )
            result: tuple[LedgerEntry | None, bool] = await batches.settle(
                lease_id, debit, shrink
            )
            return result
        return await self._settle_leased_alone(lease_id, debit, shrink, extra)

    async def _settle_leased_alone(
        self, lease_id: str, debit: NewEntry, shrink: int, extra: Sequence[NewEntry] = ()
    ) -> tuple[LedgerEntry | None, bool]:
        """``settle_leased`` in one transaction of its own."""

        async def body(tx: Tx) -> tuple[LedgerEntry | None, bool]:
            row = await tx.update_returning(
                "UPDATE reservations SET amount_micros = amount_micros - ?"
                " WHERE id = ? AND state = 'open' AND amount_micros >= ?",
                shrink, lease_id, shrink,
                returning="account_id", table="reservations", row_id=lease_id,
            )  # fmt: skip
            if row is not None and row["account_id"] == debit.account_id:
                entry = await _append(tx, debit, move_balance=False)
                await tx.execute(
                    "UPDATE accounts SET balance_micros = balance_micros + ?,"
                    " reserved_micros = reserved_micros - ? WHERE id = ?",
                    debit.amount_micros, shrink, debit.account_id,
                )  # fmt: skip
            else:
                if row is not None:  # a caller's mistake: never move the wrong account
                    raise ValueError(f"lease {lease_id} is not account {debit.account_id}'s")
                if await tx.fetchrow(
                    "SELECT id FROM reservations WHERE id = ? AND state = 'open'", lease_id
                ):  # open but short: the instance let its requests hold more than it
                    raise ValueError(f"lease {lease_id} holds less than {shrink} micro-USD")
                if await tx.fetchrow(
                    "SELECT id FROM ledger_entries WHERE request_id = ? AND kind = 'debit'",
                    debit.request_id,
                ):
                    return None, False
                entry = await _append(tx, debit)
            for other in extra:
                await _append(tx, other)
            return entry, row is not None

        return await self.db.run(body)

    async def shrink_lease(
        self, lease_id: str, amount_micros: int
    ) -> Literal["open", "closed"] | None:
        """Give ``amount_micros`` of an open lease back to its account: whether the lease is
        still open after it, or None when it was not open or holds less. ``amount_micros``
        of everything it holds (0 of nothing) returns it: the lease is then closed
        (released, with no ledger entry: it was never a request's)."""

        async def body(tx: Tx) -> Literal["open", "closed"] | None:
            row = await tx.fetchrow(
                "UPDATE reservations SET amount_micros = amount_micros - ?,"
                " state = CASE WHEN amount_micros = ? THEN 'released' ELSE state END,"
                " closed_at = CASE WHEN amount_micros = ? THEN ? ELSE closed_at END"
                " WHERE id = ? AND state = 'open' AND amount_micros >= ?"
                " RETURNING account_id, state",
                amount_micros, amount_micros, amount_micros, time.time(), lease_id,
                amount_micros,
            )  # fmt: skip
            if row is None:
                return None
            await _give_back(tx, {"amount_micros": amount_micros, "account_id": row["account_id"]})
            return "open" if row["state"] == "open" else "closed"

        return await self.db.run(body)

    async def release_orphan(self, reservation_id: str, note: str) -> LedgerEntry | None:
        """Release a reservation nobody will settle and record it as ``unsettled``."""
        async with self.db.transaction() as tx:
            row = await _close_reservation(tx, reservation_id, "released")
            if row is None:
                return None
            from tollway.storage.sql_caps import settle_caps

            await settle_caps(tx, reservation_id, 0)  # nothing was debited: holds go back
            held = int(row["amount_micros"])
            return await _append(
                tx,
                NewEntry(
                    account_id=row["account_id"],
                    kind="unsettled",
                    amount_micros=0,
                    request_id=row["request_id"],
                    note=f"{note}; {held} micro-USD were reserved",
                ),
            )

    async def open_reservations(
        self, *, not_of: Collection[str] | None = None, opened_before: float | None = None
    ) -> list[Reservation]:
        """Every open reservation, oldest first; with ``not_of`` and ``opened_before``, only
        those no instance of ``not_of`` holds or opened before then (recovery's candidates:
        the database skips the live instances' young reservations, which a process with
        thousands of streams open would otherwise turn into as many objects every
        heartbeat, on the event loop)."""
        if not_of is None or opened_before is None or not not_of:
            rows = await self.db.fetch(
                "SELECT * FROM reservations WHERE state = 'open' ORDER BY created_at"
            )
        else:
            owners = sorted(not_of)
            rows = await self.db.fetch(
                "SELECT * FROM reservations WHERE state = 'open' AND (created_at < ?"
                f" OR instance_id NOT IN ({', '.join('?' * len(owners))})) ORDER BY created_at",
                opened_before, *owners,
            )  # fmt: skip
        return [_reservation(r) for r in rows]
