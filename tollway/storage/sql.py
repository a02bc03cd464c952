"""The one SQL implementation of every storage protocol, for both dialects.

Each money movement (credit, reservation, settlement, orphan release) is one
transaction that appends to ``ledger_entries`` and adjusts the cached
``accounts.balance_micros`` / ``reserved_micros`` together, so
``balance == sum(entries)`` and ``reserved == sum(open reservations)`` hold after
every commit (``tollway audit`` checks both).
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from tollway.bounds import MAX_MONEY_MICROS
from tollway.storage.audit_sql import AuditQueries
from tollway.storage.base import (
    Account,
    ApiKey,
    BalanceOutOfRange,
    Conflict,
    InstanceRecord,
    LedgerEntry,
    NewEntry,
    Reservation,
    ReserveOutcome,
)
from tollway.storage.database import Database, Tx

__all__ = ["SqlStorage"]

_ENTRY_COLUMNS = (
    "account_id, kind, amount_micros, request_id, model, deployment, prompt_tokens,"
    " cached_tokens, completion_tokens, reasoning_tokens, prices, base_cost_micros,"
    " platform_fee_micros, total_cost_micros, partial, note, created_at"
)
_KEY_COLUMNS = (
    "k.id, k.account_id, k.key_hash, k.prefix, k.name, k.created_at, k.updated_at,"
    " k.expires_at, k.revoked_at"
)
_ACCOUNT_COLUMNS = (
    "a.id AS a_id, a.name AS a_name, a.created_at AS a_created_at, a.updated_at AS a_updated_at,"
    " a.balance_micros AS a_balance_micros, a.reserved_micros AS a_reserved_micros,"
    " a.platform_fee_fraction AS a_platform_fee_fraction,"
    " a.fixed_fee_micros AS a_fixed_fee_micros, a.disabled AS a_disabled"
)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _micros(value: Any) -> int:
    """A stored amount as an int; a value we never store (REAL, TEXT, NULL) reads as its
    integral part, else 0, so reading never fails (the audit reports it)."""
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _account(row: dict[str, Any], p: str = "") -> Account:
    return Account(
        id=row[p + "id"],
        name=row[p + "name"],
        created_at=row[p + "created_at"],
        updated_at=row[p + "updated_at"],
        balance_micros=_micros(row[p + "balance_micros"]),
        reserved_micros=_micros(row[p + "reserved_micros"]),
        platform_fee_fraction=row[p + "platform_fee_fraction"],
        fixed_fee_micros=None if row[p + "fixed_fee_micros"] is None
        else _micros(row[p + "fixed_fee_micros"]),
        disabled=bool(row[p + "disabled"]),
    )


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        account_id=row["account_id"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        name=row["name"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _entry(row: dict[str, Any]) -> LedgerEntry:
    fields = {k: row[k] for k in _ENTRY_COLUMNS.replace(" ", "").split(",") if k != "created_at"}
    fields["partial"] = bool(fields["partial"])
    return LedgerEntry(id=int(row["id"]), created_at=row["created_at"], entry=NewEntry(**fields))


def _reservation(row: dict[str, Any]) -> Reservation:
    return Reservation(
        id=row["id"],
        request_id=row["request_id"],
        account_id=row["account_id"],
        instance_id=row["instance_id"],
        amount_micros=_micros(row["amount_micros"]),
        state=row["state"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )


async def _append(tx: Tx, e: NewEntry, *, move_balance: bool = True) -> LedgerEntry:
    """Insert one entry and (unless already done) move the account's cached balance."""
    now = time.time()
    row = await tx.fetchrow(
        f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        e.account_id, e.kind, e.amount_micros, e.request_id, e.model, e.deployment,
        e.prompt_tokens, e.cached_tokens, e.completion_tokens, e.reasoning_tokens, e.prices,
        e.base_cost_micros, e.platform_fee_micros, e.total_cost_micros, e.partial, e.note, now,
    )  # fmt: skip
    assert row is not None
    if e.amount_micros and move_balance:
        await tx.execute(
            "UPDATE accounts SET balance_micros = balance_micros + ? WHERE id = ?",
            e.amount_micros,
            e.account_id,
        )
    return LedgerEntry(id=int(row["id"]), created_at=now, entry=e)


async def _close_reservation(
    tx: Tx, reservation_id: str, state: Literal["settled", "released"]
) -> dict[str, Any] | None:
    """Mark an open reservation closed and give its amount back; None if not open."""
    row = await tx.fetchrow(
        "UPDATE reservations SET state = ?, closed_at = ? WHERE id = ? AND state = 'open'"
        " RETURNING account_id, request_id, amount_micros",
        state,
        time.time(),
        reservation_id,
    )
    if row is not None:
        await tx.execute(
            "UPDATE accounts SET reserved_micros = reserved_micros - ? WHERE id = ?",
            int(row["amount_micros"]),
            row["account_id"],
        )
    return row


class SqlStorage(AuditQueries):
    """Accounts, keys, ledger, reservations, instances and audit queries over a Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect

    async def close(self) -> None:
        await self.db.close()

    # -- accounts ---------------------------------------------------------------

    async def create_account(
        self,
        name: str,
        *,
        platform_fee_fraction: str | None = None,
        fixed_fee_micros: int | None = None,
    ) -> Account:
        now = time.time()
        account_id = _new_id("acct")
        async with self.db.transaction() as tx:
            if await tx.fetchrow("SELECT id FROM accounts WHERE name = ?", name):
                raise Conflict(f"an account named {name!r} already exists")
            await tx.execute(
                "INSERT INTO accounts (id, name, created_at, updated_at, platform_fee_fraction,"
                " fixed_fee_micros) VALUES (?, ?, ?, ?, ?, ?)",
                account_id, name, now, now, platform_fee_fraction, fixed_fee_micros,
            )  # fmt: skip
        return Account(account_id, name, now, now, 0, 0, platform_fee_fraction, fixed_fee_micros)

    async def get_account(self, id_or_name: str) -> Account | None:
        row = await self.db.fetchrow(
            "SELECT * FROM accounts WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
            id_or_name,
            id_or_name,
            id_or_name,
        )
        return _account(row) if row else None

    async def list_accounts(self) -> list[Account]:
        return [_account(r) for r in await self.db.fetch("SELECT * FROM accounts ORDER BY name")]

    # -- keys -------------------------------------------------------------------

    async def create_key(
        self,
        account_id: str,
        key_hash: str,
        prefix: str,
        *,
        name: str | None,
        expires_at: float | None,
    ) -> ApiKey:
        now = time.time()
        key = ApiKey(_new_id("key"), account_id, key_hash, prefix, name, now, now, expires_at)
        await self.db.execute(
            "INSERT INTO api_keys (id, account_id, key_hash, prefix, name, created_at, updated_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            key.id, account_id, key_hash, prefix, name, now, now, expires_at,
        )  # fmt: skip
        return key

    async def key_by_hash(self, key_hash: str) -> tuple[ApiKey, Account] | None:
        row = await self.db.fetchrow(
            f"SELECT {_KEY_COLUMNS}, {_ACCOUNT_COLUMNS} FROM api_keys k"
            " JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = ?",
            key_hash,
        )
        return (_key(row), _account(row, "a_")) if row else None

    async def keys_changed_since(self, since: float) -> list[tuple[ApiKey, Account]]:
        rows = await self.db.fetch(
            f"SELECT {_KEY_COLUMNS}, {_ACCOUNT_COLUMNS} FROM api_keys k"
            " JOIN accounts a ON a.id = k.account_id WHERE k.updated_at >= ? OR a.updated_at >= ?",
            since,
            since,
        )
        return [(_key(r), _account(r, "a_")) for r in rows]

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        rows = await self.db.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.account_id = ? ORDER BY k.created_at",
            account_id,
        )
        return [_key(r) for r in rows]

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self.db.fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.id = ?", key_id
        )
        return _key(row) if row else None

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        now = time.time()
        await self.db.execute(
            "UPDATE api_keys SET revoked_at = ?, updated_at = ?"
            " WHERE id = ? AND revoked_at IS NULL",
            now,
            now,
            key_id,
        )
        return await self.get_key(key_id)

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
        self, account_id: str, request_id: str, instance_id: str, amount_micros: int
    ) -> ReserveOutcome:
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "UPDATE accounts SET reserved_micros = reserved_micros + ?"
                " WHERE id = ? AND NOT disabled AND balance_micros - reserved_micros >= ?"
                " RETURNING balance_micros, reserved_micros",
                amount_micros,
                account_id,
                amount_micros,
            )
            if row is None:
                row = await tx.fetchrow(
                    "SELECT balance_micros, reserved_micros FROM accounts WHERE id = ?", account_id
                )
                bal, res = (
                    (int(row["balance_micros"]), int(row["reserved_micros"])) if row else (0, 0)
                )
                return ReserveOutcome(None, bal, res)
            reservation = Reservation(
                _new_id("res"), request_id, account_id, instance_id, amount_micros, "open", now
            )
            await tx.execute(
                "INSERT INTO reservations (id, request_id, account_id, instance_id, amount_micros,"
                " state, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)",
                reservation.id, request_id, account_id, instance_id, amount_micros, now,
            )  # fmt: skip
            return ReserveOutcome(
                reservation, int(row["balance_micros"]), int(row["reserved_micros"])
            )

    async def settle(self, reservation_id: str | None, debit: NewEntry) -> LedgerEntry | None:
        """Close the reservation and append the debit atomically; None if already debited."""
        async with self.db.transaction() as tx:
            if reservation_id is not None:
                await _close_reservation(tx, reservation_id, "settled")
            if await tx.fetchrow(
                "SELECT id FROM ledger_entries WHERE request_id = ? AND kind = 'debit'",
                debit.request_id,
            ):
                return None
            return await _append(tx, debit)

    async def release_orphan(self, reservation_id: str, note: str) -> LedgerEntry | None:
        """Release a reservation nobody will settle and record it as ``unsettled``."""
        async with self.db.transaction() as tx:
            row = await _close_reservation(tx, reservation_id, "released")
            if row is None:
                return None
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

    async def open_reservations(self) -> list[Reservation]:
        rows = await self.db.fetch(
            "SELECT * FROM reservations WHERE state = 'open' ORDER BY created_at"
        )
        return [_reservation(r) for r in rows]

    # -- instances --------------------------------------------------------------

    async def register_instance(self, record: InstanceRecord) -> None:
        await self.db.execute(
            "INSERT INTO instances (id, hostname, pid, started_at, heartbeat_at)"
            " VALUES (?, ?, ?, ?, ?)",
            record.id, record.hostname, record.pid, record.started_at, record.heartbeat_at,
        )  # fmt: skip

    async def heartbeat(self, instance_id: str, at: float) -> bool:
        """Refresh liveness; False if the row is gone (another instance judged us dead)."""
        n = await self.db.execute(
            "UPDATE instances SET heartbeat_at = ? WHERE id = ?", at, instance_id
        )
        return n > 0

    async def remove_instance(self, instance_id: str) -> None:
        await self.db.execute("DELETE FROM instances WHERE id = ?", instance_id)

    async def list_instances(self) -> list[InstanceRecord]:
        rows = await self.db.fetch("SELECT * FROM instances")
        return [InstanceRecord(**r) for r in rows]
