"""Hourly and daily rollups of traces and ledger debits: charts never scan every row.

``refresh()`` folds the rows added since the last refresh into ``trace_rollup_hour``,
``trace_rollup_day``, ``spend_rollup_hour`` and ``spend_rollup_day`` (one
transaction per source table, serialized across workers by the state row). Both
source tables only grow and their ids increase, so each rollup is "every id up to
``last_id``". A refresh rolls up to the newest id seen at the
*previous* refresh (``pending_id``), never past it: a transaction that took a
smaller id may still be committing right now, but not one refresh interval later.
Readers add the rows with ids above ``last_id`` from the source tables (a short
tail, read through the primary key), so every figure is exact and current.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tollway.storage.database import Database, Tx
from tollway.tracing.reports import expressions

__all__ = ["HOUR", "REFRESH_SECONDS", "SOURCES", "TOTAL", "Rollups"]

log = logging.getLogger("tollway.dashboard")

REFRESH_SECONDS = 30.0
HOUR = 3600
DAY = 86400
SIZES = {"hour": HOUR, "day": DAY}
TOTAL = DAY * 2**24  # a bucket (of whole days) that holds every row: totals per dimension
_COLUMNS = {
    "spend": ("spend_micros", "debits"),
    "trace": ("requests", "errors", "fallbacks", "output_tokens", "rate_sum", "rate_n"),
}


SOURCES = ("traces", "ledger")


class Rollups:
    """Maintains and reads the rollups over one database: of both source tables, or of
    the one kept there when traces have a database of their own (``tracing.database``:
    the traces' rollups then live beside them, the ledger's beside it)."""

    def __init__(self, db: Database, batch: int = 5000,
                 sources: tuple[str, ...] = SOURCES) -> None:
        """``batch``: ids folded per transaction (SQLite's write lock is held that long);
        ``sources``: which of ``traces`` and ``ledger`` this database holds."""
        assert sources and set(sources) <= set(SOURCES), sources
        self.db = db
        self.batch = batch
        self.sources = sources
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        q = expressions(db.dialect)
        self._sql: dict[str, list[str]] = {"traces": [], "ledger": []}
        for size, seconds in SIZES.items():
            start = q["bucket"].replace("?", str(seconds)) + f" * {seconds}"
            table = f"trace_rollup_{size}"
            self._sql["traces"].append(
                f"INSERT INTO {table} (bucket_start, account_id, model, deployment, requests,"
                " errors, fallbacks, output_tokens, rate_sum, rate_n)"
                f" SELECT {start}, COALESCE(account_id, ''), COALESCE(model, ''),"
                " COALESCE(deployment, ''), COUNT(*),"
                " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),"
                f" SUM(CASE WHEN {q['fallback']} THEN 1 ELSE 0 END),"
                f" COALESCE(SUM({q['tokens']}), 0), COALESCE(SUM({q['rate']}), 0),"
                f" COUNT({q['rate']})"
                " FROM traces WHERE seq > ? AND seq <= ? GROUP BY 1, 2, 3, 4"
                " ON CONFLICT (bucket_start, account_id, model, deployment) DO UPDATE SET"
                + ",".join(f" {c} = {table}.{c} + excluded.{c}"
                           for c in _COLUMNS["trace"]))
            table = f"spend_rollup_{size}"
            self._sql["ledger"].append(
                f"INSERT INTO {table} (bucket_start, account_id, model, deployment,"
                " spend_micros, debits)"
                f" SELECT {start.replace('received_at', 'created_at')}, account_id,"
                " COALESCE(model, ''), COALESCE(deployment, ''), -SUM(amount_micros), COUNT(*)"
                " FROM ledger_entries WHERE kind = 'debit' AND id > ? AND id <= ?"
                " GROUP BY 1, 2, 3, 4"
                " ON CONFLICT (bucket_start, account_id, model, deployment) DO UPDATE SET"
                + ",".join(f" {c} = {table}.{c} + excluded.{c}"
                           for c in _COLUMNS["spend"]))

    async def _fold(self, tx: Tx, name: str, table: str, id_column: str,
                    statements: list[str]) -> bool:
        """One batch; True when more of what the previous refresh saw is left."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        state = await tx.fetchrow(
            f"SELECT last_id, pending_id FROM dashboard_rollup_state WHERE name = ?{lock}", name)
        if state is None:
            return False
        last, pending = int(state["last_id"]), int(state["pending_id"])
        upto = min(pending, last + self.batch)  # short transactions: billing writes too
        if upto > last:
            for sql in statements:
                await tx.execute(sql, last, upto)
        if upto == pending:  # caught up: what is newest now is folded at the next refresh
            newest = await tx.fetchrow(f"SELECT MAX({id_column}) AS m FROM {table}")
            pending = max(int(newest["m"] or 0) if newest else 0, pending)
        await tx.execute("UPDATE dashboard_rollup_state SET last_id = ?, pending_id = ?"
                         " WHERE name = ?", max(last, upto), pending, name)
        return upto < pending and upto > last

    async def refresh(self) -> None:
        """Fold what the previous refresh saw into the rollups (traces, then the ledger),
        at most ``batch`` ids per transaction."""
        async with self._lock:
            for name, table, column in (("traces", "traces", "seq"),
                                        ("ledger", "ledger_entries", "id")):
                if name not in self.sources:
                    continue
                more = True
                while more:
                    async with self.db.transaction() as tx:
                        more = await self._fold(tx, name, table, column, self._sql[name])
                    await asyncio.sleep(0)  # let requests in between batches

    async def watermarks(self) -> dict[str, int]:
        """``{"traces": last_id, "ledger": last_id}``: what the rollups hold (of this
        database's sources only)."""
        rows = await self.db.fetch("SELECT name, last_id FROM dashboard_rollup_state")
        return {r["name"]: int(r["last_id"]) for r in rows if r["name"] in self.sources}

    async def rows(self, kind: str, since: float, until: float, account_id: str | None,
                   step: int, dims: tuple[str, ...]) -> list[dict[str, Any]]:
        """Rolled-up ``kind`` (``trace`` or ``spend``) in [since, until) summed per
        ``step``-second bucket and ``dims`` (among account_id, model, deployment),
        optionally for one account. Whole days come from the daily table."""
        columns = _COLUMNS[kind]
        assert set(dims) <= {"account_id", "model", "deployment"}
        size = "day" if step % DAY == 0 and since % DAY == 0 else "hour"
        where = "bucket_start >= ? AND bucket_start < ?"
        args: list[Any] = [int(since // HOUR) * HOUR, until]
        if account_id is not None:
            where += " AND account_id = ?"
            args.append(account_id)
        by = ", ".join(dims)
        sums = ", ".join(f"SUM({c}) AS {c}" for c in columns)
        rows = await self.db.fetch(
            f"SELECT (bucket_start / {int(step)}) * {int(step)} AS bucket, {by}, {sums}"
            f" FROM {kind}_rollup_{size} WHERE {where} GROUP BY 1, {by}", *args)
        for row in rows:
            row["bucket"] = int(row["bucket"])
            for name in dims:
                row[name] = row[name] or None
            for c in columns:
                row[c] = float(row[c] or 0) if c == "rate_sum" else int(row[c] or 0)
        return rows

    # -- background -----------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the database may be busy or away: try again later
                log.warning("dashboard rollup refresh failed", exc_info=True)
            await asyncio.sleep(REFRESH_SECONDS)
