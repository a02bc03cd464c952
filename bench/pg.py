"""PostgreSQL for the benchmark's tollway phases (``--postgres``): a fresh schema per
phase on the given server, dropped when the bench ends, and the probes' timings read from
the traces kept there (``bench.measure.probe_timings`` reads them from a SQLite file)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.measure import percentile

__all__ = ["PostgresSchemas"]


class PostgresSchemas:
    """Schemas made for one bench run on the server at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []

    async def _execute(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.url, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def fresh(self, phase: str) -> str:
        """A new empty schema for ``phase``: the database URL that selects it."""
        schema = f"tollway_bench_{phase.replace('-', '_')}_{secrets.token_hex(3)}"
        await self._execute(f"CREATE SCHEMA {schema}")
        self.made.append(schema)
        sep = "&" if urlsplit(self.url).query else "?"
        return f"{self.url}{sep}search_path={schema}"

    async def probe_timings(self, schema_url: str, model: str,
                            since: float) -> dict[str, float | None]:
        """As ``bench.measure.probe_timings``, from the traces in ``schema_url``'s schema."""
        schema = schema_url.rsplit("search_path=", 1)[1]
        rows = await self._execute(
            f"SELECT (data::jsonb #>> '{{timings,admitted_ms}}')::float8 AS a,"
            f" (data::jsonb #>> '{{timings,first_token_ms}}')::float8 AS f"
            f" FROM {schema}.traces WHERE model = $1 AND received_at >= $2", model, since)
        out: dict[str, float | None] = {"probe_traces": float(len(rows))}
        for name, key in (("admitted", "a"), ("first_token", "f")):
            values = [float(r[key]) for r in rows if r[key] is not None]
            for q in (50, 99):
                out[f"probe_{name}_p{q}_ms"] = percentile(values, q)
        return out

    @staticmethod
    def server_cpu_s() -> float | None:
        """CPU seconds used so far by a PostgreSQL server on this machine: the postmaster
        with its reaped children (backends that have exited) plus the live backends; None
        when no ``postgres`` process can be read."""
        tick = os.sysconf("SC_CLK_TCK")
        procs: dict[str, list[str]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                name, _, rest = (proc / "stat").read_text().partition(") ")
            except OSError:
                continue
            if name.endswith("(postgres"):
                procs[proc.name] = rest.split()  # from field 3 (state) on
        total = 0
        for fields in procs.values():
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if fields[1] not in procs:  # the postmaster: with its reaped backends
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
        return total / tick if procs else None

    async def drop_all(self) -> None:
        for schema in self.made:
            await self._execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.made.clear()
