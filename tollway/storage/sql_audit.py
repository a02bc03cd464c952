"""The audit's queries in SQL (mixed into ``SqlStorage``), robust to any stored value.

See ``tollway.billing.audit``.

Our own writers store money only as integers bounded by ``MAX_MONEY_MICROS``;
the audit must still report, never crash on, what another writer may have left:
a REAL or TEXT in an SQLite INTEGER column, a huge integer, a NULL. So:

- ``bad_values`` lists every money value that is not an integer within the bound;
- sums never overflow: PostgreSQL sums BIGINT into NUMERIC; SQLite sums each
  integer's high and low 32-bit halves separately (both sums stay far inside 64
  bits) and Python adds them exactly; non-integer values are left out of the
  sums (``bad_values`` names them) and the comparison is done in Python;
- PostgreSQL arithmetic on stored values runs in NUMERIC, so a value near the
  BIGINT limit cannot overflow a check.
"""

from __future__ import annotations

from typing import Any

from tollway.bounds import MAX_MONEY_MICROS
from tollway.storage.base import LEASE_PREFIX
from tollway.storage.database import Database

__all__ = ["MONEY_COLUMNS", "AuditQueries", "read_micros", "stored_int"]

# (table, money column, nullable): the values the audit checks for type and range
MONEY_COLUMNS: list[tuple[str, str, bool]] = [
    ("accounts", "balance_micros", False),
    ("accounts", "reserved_micros", False),
    ("accounts", "fixed_fee_micros", True),
    ("reservations", "amount_micros", False),
    ("ledger_entries", "amount_micros", False),
    ("ledger_entries", "base_cost_micros", True),
    ("ledger_entries", "platform_fee_micros", True),
    ("ledger_entries", "total_cost_micros", True),
]
_HALF = 2**32


def stored_int(value: Any) -> int | None:
    """A stored value as an exact int, or None when it is not an integer (REAL, TEXT, NULL)."""
    if type(value) is int:
        return value
    if value is not None and type(value).__name__ == "Decimal" and value == value.to_integral():
        return int(value)
    return None


def read_micros(value: Any) -> int:
    """A stored amount as an int for everyday reads: a value we never store (REAL, TEXT,
    NULL) reads as its integral part, else 0, so reading never fails (the audit reports it)."""
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


class AuditQueries:
    """Audit queries over ``self.db`` (SQLite or PostgreSQL)."""

    db: Database

    def _sqlite(self) -> bool:
        return self.db.dialect == "sqlite"

    def _sum(self, column: str) -> str:
        """Select-list items ``hi, lo`` with ``sum = hi * 2^32 + lo`` exactly."""
        if self._sqlite():
            v = f"CASE WHEN typeof({column}) = 'integer' THEN {column} END"
            return (
                f"COALESCE(SUM(({v}) / {_HALF}), 0) AS hi,"
                f" COALESCE(SUM(({v}) % {_HALF}), 0) AS lo"
            )
        return f"0 AS hi, COALESCE(SUM({column}), 0) AS lo"

    def _num(self, column: str) -> str:
        return column if self._sqlite() else f"CAST({column} AS NUMERIC)"

    async def _sums(self, sql: str, stored: str, total: str) -> list[dict[str, Any]]:
        out = []
        for r in await self.db.fetch(sql):
            value = stored_int(r[stored])
            summed = int(r["hi"]) * _HALF + int(r["lo"])
            if value is not None and value != summed:
                out.append({"account_id": r["account_id"], stored: value, total: summed})
        return out

    async def balance_mismatches(self) -> list[dict[str, Any]]:
        """Accounts whose integer balance differs from the exact sum of their integer entries."""
        return await self._sums(
            f"SELECT a.id AS account_id, a.balance_micros, {self._sum('e.amount_micros')}"
            " FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id"
            " GROUP BY a.id, a.balance_micros",
            "balance_micros",
            "ledger_sum",
        )

    async def reserved_mismatches(self) -> list[dict[str, Any]]:
        """Accounts whose integer reserved amount differs from their open reservations."""
        return await self._sums(
            f"SELECT a.id AS account_id, a.reserved_micros, {self._sum('r.amount_micros')}"
            " FROM accounts a LEFT JOIN reservations r ON r.account_id = a.id AND r.state = 'open'"
            " GROUP BY a.id, a.reserved_micros",
            "reserved_micros",
            "open_sum",
        )

    async def bad_values(self) -> list[dict[str, Any]]:
        """Money values that are not integers within ±``MAX_MONEY_MICROS`` (or a stray NULL)."""
        parts, args = [], []
        for table, column, nullable in MONEY_COLUMNS:
            if self._sqlite():
                allowed = "('integer', 'null')" if nullable else "('integer')"
                kind = f"typeof({column})"
                bad = f"typeof({column}) NOT IN {allowed} OR {column} NOT BETWEEN ? AND ?"
            else:
                kind = f"CASE WHEN {column} IS NULL THEN 'null' ELSE 'integer' END"
                bad = f"{column} NOT BETWEEN ? AND ?"
                if not nullable:
                    bad += f" OR {column} IS NULL"
            parts.append(
                f"SELECT '{table}' AS tbl, CAST(id AS TEXT) AS row_id, '{column}' AS col,"
                f" CAST({column} AS TEXT) AS value, {kind} AS kind FROM {table} WHERE {bad}"
            )
            args += [-MAX_MONEY_MICROS, MAX_MONEY_MICROS]
        return await self.db.fetch(" UNION ALL ".join(parts), *args)

    async def negative_balances(self) -> list[dict[str, Any]]:
        """Accounts whose balance is below zero (as stored: an int, or REAL on SQLite)."""
        return await self.db.fetch(
            "SELECT id AS account_id, CAST(balance_micros AS TEXT) AS balance_micros"
            " FROM accounts WHERE balance_micros < 0"
        )

    async def stale_reservations(self, before: float) -> list[dict[str, Any]]:
        """Open reservations created before ``before`` (or with no creation time)."""
        return await self.db.fetch(
            "SELECT id, request_id, created_at FROM reservations WHERE state = 'open'"
            " AND (created_at < ? OR created_at IS NULL) ORDER BY created_at",
            before,
        )

    async def duplicate_debits(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT request_id, COUNT(*) AS debits FROM ledger_entries"
            " WHERE kind = 'debit' GROUP BY request_id HAVING COUNT(*) > 1"
        )

    async def settled_without_debit(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT r.id AS reservation_id, r.request_id, r.account_id FROM reservations r"
            " WHERE r.state = 'settled' AND NOT EXISTS (SELECT 1 FROM ledger_entries e"
            " WHERE e.request_id = r.request_id AND e.kind = 'debit')"
        )

    async def released_without_record(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT r.id AS reservation_id, r.request_id, r.account_id FROM reservations r"
            " WHERE r.state = 'released' AND NOT EXISTS (SELECT 1 FROM ledger_entries e"
            " WHERE e.request_id = r.request_id AND e.kind IN ('unsettled', 'debit'))"
            # a balance lease returned by its instance is no request: it has no record
            f" AND substr(r.request_id, 1, {len(LEASE_PREFIX)}) <> '{LEASE_PREFIX}'"
        )

    async def bad_debit_arithmetic(self) -> list[dict[str, Any]]:
        """Debits where amount ≠ −total or total ≠ base + fee (a missing figure counts)."""
        amount, base = self._num("amount_micros"), self._num("base_cost_micros")
        fee, total = self._num("platform_fee_micros"), self._num("total_cost_micros")
        return await self.db.fetch(
            "SELECT id, request_id, CAST(amount_micros AS TEXT) AS amount_micros,"
            " CAST(base_cost_micros AS TEXT) AS base_cost_micros,"
            " CAST(platform_fee_micros AS TEXT) AS platform_fee_micros,"
            " CAST(total_cost_micros AS TEXT) AS total_cost_micros"
            " FROM ledger_entries WHERE kind = 'debit' AND ("
            " total_cost_micros IS NULL OR base_cost_micros IS NULL"
            f" OR platform_fee_micros IS NULL OR {amount} <> -{total}"
            f" OR {total} <> {base} + {fee})"
        )

    async def debits_over_reservation(self) -> list[dict[str, Any]]:
        """Debits above their request's reservation (with extensions)."""
        debit, reserved = self._num("e.amount_micros"), self._num("r.amount_micros")
        return await self.db.fetch(
            "SELECT e.id, e.request_id, CAST(-e.amount_micros AS TEXT) AS debit_micros,"
            " CAST(r.amount_micros AS TEXT) AS reserved_micros FROM ledger_entries e"
            " JOIN reservations r ON r.request_id = e.request_id"
            f" WHERE e.kind = 'debit' AND -{debit} > {reserved}"
        )

    async def bad_overage_entries(self) -> list[dict[str, Any]]:
        """``provider_overage`` lines that move money, do not add up, or lack their debit."""
        base, fee = self._num("o.base_cost_micros"), self._num("o.platform_fee_micros")
        total = self._num("o.total_cost_micros")
        return await self.db.fetch(
            "SELECT o.id, o.request_id, o.amount_micros, o.base_cost_micros,"
            " o.platform_fee_micros, o.total_cost_micros,"
            " (SELECT COUNT(*) FROM ledger_entries d WHERE d.request_id = o.request_id"
            "  AND d.kind = 'debit') AS debits"
            " FROM ledger_entries o WHERE o.kind = 'provider_overage' AND ("
            " o.amount_micros <> 0 OR o.total_cost_micros IS NULL OR o.total_cost_micros <= 0"
            f" OR o.base_cost_micros IS NULL OR o.platform_fee_micros IS NULL"
            f" OR {total} <> {base} + {fee}"
            " OR (SELECT COUNT(*) FROM ledger_entries d WHERE d.request_id = o.request_id"
            "     AND d.kind = 'debit') <> 1)"
        )
