"""The one SQL implementation of every storage protocol, for both dialects.

Accounts, keys and instances are here; money movements (ledger, reservations) are
in ``sql_money`` and the audit's queries in ``sql_audit``, mixed into ``SqlStorage``.
"""

from __future__ import annotations

import time
from typing import Any

from tollway.storage.base import Account, ApiKey, Conflict, InstanceRecord
from tollway.storage.database import Database
from tollway.storage.sql_audit import AuditQueries, read_micros
from tollway.storage.sql_caps import CapQueries
from tollway.storage.sql_money import MoneyQueries, new_id
from tollway.storage.sql_reports import ReportQueries

__all__ = ["SqlStorage"]

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


def _account(row: dict[str, Any], p: str = "") -> Account:
    return Account(
        id=row[p + "id"],
        name=row[p + "name"],
        created_at=row[p + "created_at"],
        updated_at=row[p + "updated_at"],
        balance_micros=read_micros(row[p + "balance_micros"]),
        reserved_micros=read_micros(row[p + "reserved_micros"]),
        platform_fee_fraction=row[p + "platform_fee_fraction"],
        fixed_fee_micros=None if row[p + "fixed_fee_micros"] is None
        else read_micros(row[p + "fixed_fee_micros"]),
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


class SqlStorage(MoneyQueries, AuditQueries, CapQueries, ReportQueries):
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
        account_id = new_id("acct")
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
        key = ApiKey(new_id("key"), account_id, key_hash, prefix, name, now, now, expires_at)
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
