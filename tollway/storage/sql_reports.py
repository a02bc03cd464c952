"""Read-only report queries for the dashboard: filtered ledger pages and spend by time.

Mixed into ``SqlStorage``; the same SQL serves SQLite and PostgreSQL (``?``
placeholders are rewritten for PostgreSQL), except the bucket expression.
Money stays integer micro-USD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tollway.storage.base import LedgerEntry
from tollway.storage.database import Database
from tollway.storage.sql_money import _entry

__all__ = ["ReportQueries"]

SPEND_KINDS = ("debit",)  # what accounts are charged (unsettled entries are 0)


class ReportQueries:
    """Dashboard reads over ``self.db`` (indexed by ``ledger_account_time``/``ledger_time``)."""

    db: Database

    async def ledger_filtered(
        self,
        account_id: str,
        *,
        kinds: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[LedgerEntry]:
        """An account's entries newest first, filtered by kind and time, paged by id."""
        where = ["account_id = ?"]
        args: list[Any] = [account_id]
        if kinds:
            where.append("kind IN (" + ",".join("?" * len(kinds)) + ")")
            args.extend(kinds)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        rows = await self.db.fetch(
            f"SELECT * FROM ledger_entries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            *args, limit,
        )  # fmt: skip
        return [_entry(r) for r in rows]

    async def spend_buckets(
        self, since: float, until: float, bucket_seconds: int, account_id: str | None = None,
        after_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Spend (micro-USD, positive) and debit count per time bucket, model and account.

        Each row: ``bucket`` (start, Unix seconds), ``model`` (served), ``deployment``,
        ``account_id``,
        ``spend_micros``, ``debits``. ``account_id`` None means every account;
        ``after_id`` counts only entries with a larger id (those not rolled up yet).
        """
        if self.db.dialect == "postgres":
            bucket = "CAST(FLOOR(created_at / ?) AS BIGINT)"
        else:
            bucket = "CAST(created_at / ? AS INTEGER)"
        if after_id is None:
            where = "kind = 'debit' AND created_at >= ? AND created_at < ?"
            args: list[Any] = [float(bucket_seconds), since, until]
        else:  # the tail: read by id only (a short range of the primary key), then by time;
            # the id is written out (an int) so that the planner sees how short the range is
            # (and by account afterwards: an account's index would lead the planner astray)
            where = f"kind = 'debit' AND id > {int(after_id)}"
            args = [float(bucket_seconds)]
        if account_id is not None and after_id is None:
            where += " AND account_id = ?"
            args.append(account_id)
        rows = await self.db.fetch(
            f"SELECT {bucket} AS b, model, deployment, account_id, -SUM(amount_micros) AS spend,"
            f" COUNT(*) AS n FROM ledger_entries WHERE {where}"
            " GROUP BY b, model, deployment, account_id ORDER BY b",
            *args,
        )
        first = int(since // bucket_seconds) * bucket_seconds
        return [
            {"bucket": int(r["b"]) * bucket_seconds, "model": r["model"],
             "deployment": r["deployment"], "account_id": r["account_id"],
             "spend_micros": int(r["spend"] or 0), "debits": int(r["n"])}
            for r in rows if first <= int(r["b"]) * bucket_seconds < until
            and (account_id is None or r["account_id"] == account_id)
        ]  # fmt: skip
