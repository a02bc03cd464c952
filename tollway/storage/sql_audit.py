"""The audit's queries in SQL (mixed into ``SqlStorage``); see ``tollway.billing.audit``."""

from __future__ import annotations

from typing import Any

from tollway.storage.database import Database

__all__ = ["AuditQueries"]


class AuditQueries:
    """Each query returns the rows that break one ledger invariant."""

    db: Database

    async def balance_mismatches(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT a.id AS account_id, a.balance_micros,"
            " CAST(COALESCE(SUM(e.amount_micros), 0) AS BIGINT) AS ledger_sum"
            " FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id"
            " GROUP BY a.id, a.balance_micros"
            " HAVING a.balance_micros <> COALESCE(SUM(e.amount_micros), 0)"
        )

    async def reserved_mismatches(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT a.id AS account_id, a.reserved_micros,"
            " CAST(COALESCE(SUM(r.amount_micros), 0) AS BIGINT) AS open_sum"
            " FROM accounts a LEFT JOIN reservations r ON r.account_id = a.id AND r.state = 'open'"
            " GROUP BY a.id, a.reserved_micros"
            " HAVING a.reserved_micros <> COALESCE(SUM(r.amount_micros), 0)"
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
        )

    async def bad_debit_arithmetic(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT id, request_id, amount_micros, base_cost_micros, platform_fee_micros,"
            " total_cost_micros FROM ledger_entries WHERE kind = 'debit' AND ("
            " total_cost_micros IS NULL OR amount_micros <> -total_cost_micros"
            " OR total_cost_micros <> base_cost_micros + platform_fee_micros)"
        )

    async def debits_over_reservation(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT e.id, e.request_id, -e.amount_micros AS debit_micros,"
            " r.amount_micros AS reserved_micros FROM ledger_entries e"
            " JOIN reservations r ON r.request_id = e.request_id"
            " WHERE e.kind = 'debit' AND -e.amount_micros > r.amount_micros"
        )

    async def bad_overage_entries(self) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT o.id, o.request_id, o.amount_micros, o.base_cost_micros,"
            " o.platform_fee_micros, o.total_cost_micros,"
            " (SELECT COUNT(*) FROM ledger_entries d WHERE d.request_id = o.request_id"
            "  AND d.kind = 'debit') AS debits"
            " FROM ledger_entries o WHERE o.kind = 'provider_overage' AND ("
            " o.amount_micros <> 0 OR o.total_cost_micros IS NULL OR o.total_cost_micros <= 0"
            " OR o.total_cost_micros <> o.base_cost_micros + o.platform_fee_micros"
            " OR (SELECT COUNT(*) FROM ledger_entries d WHERE d.request_id = o.request_id"
            "     AND d.kind = 'debit') <> 1)"
        )
