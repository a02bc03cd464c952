"""Where traces live: a narrow ``TraceStore`` protocol, SQLite and PostgreSQL.

Rows are ``(request_id, received_at, account_id, key_id, model, deployment,
status, data, bodies, client_request_id)`` with ``data`` the record as JSON.
``request_id`` is tollway's own id; ``client_request_id`` is the client's
``X-Request-Id`` (a label: clients may reuse one). Each row also gets a
store-assigned ``seq``; a lookup by id matches either id and returns the newest
match in the caller's account, and listing is newest first keyed by
``(received_at, seq)`` so that a cursor is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tollway.storage.migrate import dialect_of, upgrade
from tollway.storage.sqlite import (
    CHECKPOINT_INTERVAL_S,
    open_database,
    sqlite_path,
    write_gate,
)

__all__ = [
    "PostgresTraceStore",
    "SqliteTraceStore",
    "TraceQuery",
    "TraceRow",
    "TraceStore",
    "open_trace_store",
    "record_to_row",
]

TraceRow = tuple[
    str, float, str | None, str | None, str | None, str | None, int, str, str | None, str | None
]

_COLUMNS = (
    "request_id, received_at, account_id, key_id, model, deployment, status, data, bodies,"
    " client_request_id"
)
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def record_to_row(record: dict[str, Any]) -> TraceRow:
    """Serialize a trace record into the row the stores insert."""
    data = dict(record)  # a shallow copy (C speed) minus the bodies, in the same key order
    bodies = data.pop("bodies", None)
    get = data.get
    return (
        data["id"],
        data["received_at"],
        get("account_id"),
        get("key_id"),
        get("model"),
        get("deployment"),
        int(get("status") or 0),
        _dumps(data),
        None if bodies is None else _dumps(bodies),
        get("client_request_id"),
    )


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Filters for a listing; ``account_id`` None means every account (admin)."""

    account_id: str | None = None
    all_accounts: bool = False
    model: str | None = None
    deployment: str | None = None
    key_id: str | None = None
    status_min: int | None = None
    status_max: int | None = None
    since: float | None = None
    until: float | None = None
    after: tuple[float, int] | None = None  # cursor (received_at, seq): strictly older
    limit: int = 20


class TraceStore(Protocol):
    """Persistence for traces."""

    async def insert_many(self, rows: Sequence[TraceRow]) -> None: ...

    async def get(self, request_id: str, account_id: str | None) -> dict[str, Any] | None: ...

    async def find(self, query: TraceQuery) -> list[tuple[int, dict[str, Any]]]: ...

    async def prune(self, before: float, batch: int = 5000) -> int: ...

    async def report(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def transient(self, exc: BaseException) -> bool: ...

    async def close(self) -> None: ...


def _where(query: TraceQuery, ph: Any) -> tuple[str, list[Any]]:
    """WHERE clause and arguments; ``ph()`` yields the next placeholder."""
    parts: list[str] = []
    args: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        parts.append(sql.format(*[ph() for _ in values]))
        args.extend(values)

    if not query.all_accounts:
        add("account_id = {}", query.account_id)
    for column in ("model", "deployment", "key_id"):
        if getattr(query, column) is not None:
            add(column + " = {}", getattr(query, column))
    if query.status_min is not None:
        add("status >= {}", query.status_min)
    if query.status_max is not None:
        add("status <= {}", query.status_max)
    if query.since is not None:
        add("received_at >= {}", query.since)
    if query.until is not None:
        add("received_at < {}", query.until)
    if query.after is not None:
        ts, seq = query.after
        add("(received_at < {} OR (received_at = {} AND seq < {}))", ts, ts, seq)
    return (" WHERE " + " AND ".join(parts)) if parts else "", args


def _get_sql(
    request_id: str, account_id: str | None, ph: Any, cast: str = ""
) -> tuple[str, list[Any]]:
    """The newest row whose tollway id or client id is ``request_id`` (one index each).

    ``ph(n)`` is the n-th placeholder, ``cast`` a suffix for the JSON columns. Two
    lookups joined with UNION ALL rather than an OR, which SQLite would answer by
    scanning the account's traces.
    """
    args: list[Any] = [request_id]
    scope = ""
    if account_id is not None:
        args.append(account_id)
        scope = f" AND account_id = {ph(2)}"
    return (
        f"SELECT data{cast}, bodies{cast} FROM ("
        f"SELECT seq, data, bodies FROM traces WHERE request_id = {ph(1)}{scope}"
        " UNION ALL "
        f"SELECT seq, data, bodies FROM traces WHERE client_request_id = {ph(1)}{scope}"
        ") AS found ORDER BY seq DESC LIMIT 1",
        args,
    )


def _merge(data: Any, bodies: Any) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(data)
    record["bodies"] = None if bodies is None else orjson.loads(bodies)
    return record


# The writer connection keeps SQLite's default 2 MiB page cache. Request ids are
# time-ordered (``tollway.ids``), so inserts touch the right edge of each index; the
# 8 MiB it had when they were random grew the process by 6 MiB under load (bench e:p
# with traces, 500 streams: RSS per open stream 80.0 / 80.3 -> 67.7 / 67.8 KiB) for no
# CPU a run could show (a client's random X-Request-Id index misses in either). It
# never checkpoints inside a commit (which would hold the file's write gate through the
# copy and its fsync): a PASSIVE checkpoint, which other writers do not wait for, runs
# after a batch at most every ``CHECKPOINT_INTERVAL_S``, and the WAL is truncated back
# to 64 MiB after one.
_WRITER_PRAGMAS = (
    "PRAGMA cache_size = -2048",  # KiB
    "PRAGMA wal_autocheckpoint = 0",
    "PRAGMA journal_size_limit = 67108864",
)


_ROWS_PER_INSERT = 99  # 990 parameters: below SQLite's 999 before 3.32


def _insert_sizes(rows: int) -> list[int]:
    """Rows per statement for a batch of ``rows``: 99s, then the rest in powers of two.

    Each distinct statement stays prepared in the connection's statement cache: with
    one per batch size (1 to 99), a writer under load ended up holding 99 prepared
    multi-row inserts, ≈ 5 MiB, that grew the process through the run. These sizes
    are 8 statements, and a batch costs the same per row (4.15–4.40 against 4.26–4.51
    µs in a micro-benchmark of batches of 20 to 170)."""
    sizes = [_ROWS_PER_INSERT] * (rows // _ROWS_PER_INSERT)
    rest = rows % _ROWS_PER_INSERT
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO traces ({_COLUMNS}) VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?,?)"] * rows)


class _Writer:
    """The trace writer's sqlite3 connection, used from one worker thread.

    A batch is one call into that thread (its statements and their commit), so the
    file's write gate is held for the database work alone. (With aiosqlite every
    statement was a round trip through the event loop, and under load each waited a
    loop iteration: a 50-row batch held the file for up to 30 ms, and reservations
    waited behind it.)
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollway-traces")
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in ("PRAGMA busy_timeout = 5000", "PRAGMA journal_mode = WAL",
                       "PRAGMA synchronous = NORMAL", *_WRITER_PRAGMAS):  # fmt: skip
            conn.execute(pragma)
        self._conn = conn

    async def run(self, fn: Any, *args: Any) -> Any:
        """``fn(connection, *args)`` in the writer's thread; its result."""
        return await _thread_result(
            asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, args)
        )

    async def run_holding(self, gate: asyncio.Lock, fn: Any, *args: Any) -> Any:
        """``run(fn, *args)`` holding ``gate`` (the file's write gate), which is let go as
        soon as the thread is done, in the loop iteration that learns so; this task resumes
        one or two iterations later (through ``asyncio.shield``). Under load an iteration
        lasts milliseconds, and the admissions waiting behind the writer wait that much less."""
        await gate.acquire()
        loop = asyncio.get_running_loop()
        try:
            done = self._pool.submit(self._call, fn, args)
        except BaseException:
            gate.release()
            raise

        def let_go(_: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(gate.release)

        done.add_done_callback(let_go)
        return await _thread_result(asyncio.wrap_future(done))

    def _call(self, fn: Any, args: tuple[Any, ...]) -> Any:
        if self._conn is None:
            self._open()
        return fn(self._conn, *args)

    async def close_connection(self) -> None:
        """Close the connection (the next ``run`` opens it again)."""
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            await self.run(shut)

    async def close(self) -> None:
        await self.close_connection()
        self._pool.shutdown(wait=True)


async def _thread_result(future: asyncio.Future[Any]) -> Any:
    """The result of the writer thread's ``future``. A cancelled caller still waits for the
    thread, so whatever it holds (the write gate) stays held till then."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


def _insert_rows(conn: sqlite3.Connection, rows: Sequence[TraceRow]) -> None:
    """One transaction, up to ``_ROWS_PER_INSERT`` rows per statement (``_insert_sizes``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, values in _insert_statements(rows):
            conn.execute(sql, values)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _insert_statements(rows: Sequence[TraceRow]) -> Iterator[tuple[str, list[Any]]]:
    """The multi-row ``INSERT``s of ``rows`` (sizes from ``_insert_sizes``), with values."""
    start = 0
    for size in _insert_sizes(len(rows)):
        chunk = rows[start:start + size]
        yield _insert_sql(size), [value for row in chunk for value in row]
        start += size


def _insert_body(rows: Sequence[TraceRow]) -> Any:
    """``_insert_rows`` as a transaction body for ``SqliteDatabase.run``."""

    async def body(tx: Any) -> None:
        for sql, values in _insert_statements(rows):
            await tx.execute(sql, *values)

    return body


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


_DELETE_BEFORE = (
    "DELETE FROM traces WHERE seq IN (SELECT seq FROM traces WHERE received_at < ? LIMIT ?)"
)
# Rows a prune deletes in one transaction on the process's shared connection, which is the
# event loop's: a few milliseconds of the loop at a time (four indexes a row)
_SHARED_DELETE_BATCH = 500


def _delete_before(conn: sqlite3.Connection, before: float, batch: int) -> int:
    cur = conn.execute(_DELETE_BEFORE, (before, batch))
    return int(cur.rowcount)


def _delete_body(before: float, batch: int) -> Any:
    """``_delete_before`` as a transaction body for ``SqliteDatabase.run``."""

    async def body(tx: Any) -> int:
        return int(await tx.execute(_DELETE_BEFORE, before, batch))

    return body


class SqliteTraceStore:
    """SQLite in WAL mode: a writer connection on its own thread, and an aiosqlite reader
    opened when something first reads (the dashboard, the trace API): until then no reader
    thread, connection or aiosqlite import (≈ 0.4 MiB) in a process that only writes."""

    dialect = "sqlite"

    def __init__(self, writer: _Writer, path: str) -> None:
        self._w = writer
        self._r: Any = None
        self._opening = asyncio.Lock()
        self._path = path
        # the file's write gate (``tollway.storage.sqlite.write_gate``): the writer takes
        # turns with the process's other connections (billing's) instead of meeting busy
        self._lock = write_gate(path)
        self._checkpointed = time.monotonic()

    @classmethod
    async def connect(cls, dsn: str) -> SqliteTraceStore:
        """Open the writer's connection (the schema must exist), unless the process has
        the file open already (``open_database``: rows go through that connection, and the
        writer's opens only to prune); the reader's opens on first use (``_reader``)."""
        path = sqlite_path(dsn)
        if path == ":memory:":
            raise ValueError("traces need a file database: sqlite:///PATH")
        writer = _Writer(path)
        if open_database(path) is None:
            try:
                await writer.run(lambda conn: None)  # opened now: errors surface here
            except BaseException:
                await writer.close()
                raise
        return cls(writer, path)

    async def _reader(self) -> Any:
        """The reader's connection, opened on first use."""
        if self._r is not None:
            return self._r
        async with self._opening:
            if self._r is None:
                import aiosqlite

                reader = await aiosqlite.connect(self._path)
                try:
                    await reader.execute("PRAGMA busy_timeout = 5000")
                    await reader.execute("PRAGMA journal_mode = WAL")
                except BaseException:
                    await reader.close()
                    raise
                self._r = reader
        return self._r

    async def insert_many(self, rows: Sequence[TraceRow]) -> None:
        """Insert in one transaction, up to ``_ROWS_PER_INSERT`` rows per statement.

        One multi-row ``INSERT`` instead of ``executemany``: the sqlite3 module
        releases and re-takes the GIL around every statement step, and under load
        each re-take waits for the event loop's thread to yield it (up to the
        switch interval), which costs both threads more than the insert itself.
        """
        shared = open_database(self._path)
        if shared is not None:  # the process's own connection: rows join its group commit
            await shared.run(_insert_body(rows))  # (and its checkpoints keep the WAL small)
            return
        await self._w.run_holding(self._lock, _insert_rows, rows)
        now = time.monotonic()
        if now - self._checkpointed >= CHECKPOINT_INTERVAL_S:
            self._checkpointed = now
            with contextlib.suppress(sqlite3.Error):
                await self._w.run(_checkpoint)

    async def get(self, request_id: str, account_id: str | None) -> dict[str, Any] | None:
        """The newest trace with this id (tollway's or the client's), scoped to an
        account unless ``account_id`` is None."""
        sql, args = _get_sql(request_id, account_id, lambda n: f":p{n}")
        # named, with a mapping: sqlite3 takes ``?1`` for a named parameter, and binding
        # one from a sequence is deprecated since Python 3.12 and an error from 3.14
        named = {f"p{n}": value for n, value in enumerate(args, 1)}
        async with (await self._reader()).execute(sql, named) as cur:
            row = await cur.fetchone()
        return None if row is None else _merge(row[0], row[1])

    async def find(self, query: TraceQuery) -> list[tuple[int, dict[str, Any]]]:
        """``(seq, record)`` newest first, without bodies."""
        where, args = _where(query, lambda: "?")
        sql = f"SELECT seq, data FROM traces{where} ORDER BY received_at DESC, seq DESC LIMIT ?"
        async with (await self._reader()).execute(sql, [*args, query.limit]) as cur:
            rows = await cur.fetchall()
        return [(int(r[0]), orjson.loads(r[1])) for r in rows]

    async def report(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A read-only query on the reader connection (``tracing.reports`` builds them)."""
        async with (await self._reader()).execute(sql, list(args)) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def prune(self, before: float, batch: int = 5000) -> int:
        """Delete traces received before ``before``, in batches; return how many.

        When the process has the file open already (``open_database``), the deletes go
        through that connection, as the rows do, in transactions of at most
        ``_SHARED_DELETE_BATCH`` rows that join its group commits. (They went through the
        writer's thread, which opened a connection of its own for each prune and held the
        file's write gate meanwhile: under load every step of that thread waited for the
        event loop to let go of the GIL, and the reservations and settlements queued behind
        the gate waited with it, 60–220 ms at the first prune of a paced benchmark.)"""
        shared = open_database(self._path)
        step = batch if shared is None else min(batch, _SHARED_DELETE_BATCH)

        async def delete() -> int:
            if shared is not None:
                return int(await shared.run(_delete_body(before, step)))
            return int(await self._w.run_holding(self._lock, _delete_before, before, step))

        total = 0
        while True:
            count = await delete()
            total += count
            if count < step:
                return total

    def transient(self, exc: BaseException) -> bool:
        """Locked or unavailable database (retry) versus a bad row (do not)."""
        return isinstance(exc, sqlite3.OperationalError | OSError)

    async def close(self) -> None:
        """Close both connections."""
        await self._w.close()
        async with self._opening:
            if self._r is not None:
                await self._r.close()
                self._r = None


class PostgresTraceStore:
    """asyncpg pool; ``data`` and ``bodies`` are JSONB."""

    dialect = "postgres"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = 4) -> PostgresTraceStore:
        """Open a small pool (the schema must exist)."""
        import asyncpg

        return cls(await asyncpg.create_pool(dsn, min_size=1, max_size=max_size))

    async def insert_many(self, rows: Sequence[TraceRow]) -> None:
        """Insert in one transaction."""
        clean = [
            r[:7] + (_pg_json(r[7]), None if r[8] is None else _pg_json(r[8]), r[9])
            for r in rows
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                f"INSERT INTO traces ({_COLUMNS}) VALUES "
                "($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9::jsonb,$10)",
                clean,
            )

    async def get(self, request_id: str, account_id: str | None) -> dict[str, Any] | None:
        """The newest trace with this id (tollway's or the client's), scoped to an
        account unless ``account_id`` is None."""
        sql, args = _get_sql(request_id, account_id, lambda n: f"${n}", "::text")
        row = await self._pool.fetchrow(sql, *args)
        return None if row is None else _merge(row[0], row[1])

    async def find(self, query: TraceQuery) -> list[tuple[int, dict[str, Any]]]:
        """``(seq, record)`` newest first, without bodies."""
        counter = iter(range(1, 100))
        where, args = _where(query, lambda: f"${next(counter)}")
        sql = (
            f"SELECT seq, data::text FROM traces{where} "
            f"ORDER BY received_at DESC, seq DESC LIMIT ${next(counter)}"
        )
        rows = await self._pool.fetch(sql, *args, query.limit)
        return [(int(r[0]), orjson.loads(r[1])) for r in rows]

    async def report(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A read-only query (``?`` placeholders; ``tracing.reports`` builds them)."""
        from tollway.storage.database import dollar_params

        return [tuple(r) for r in await self._pool.fetch(dollar_params(sql), *args)]

    async def prune(self, before: float, batch: int = 5000) -> int:
        """Delete traces received before ``before``, in batches; return how many."""
        total = 0
        while True:
            status = await self._pool.execute(
                "DELETE FROM traces WHERE seq IN (SELECT seq FROM traces "
                "WHERE received_at < $1 LIMIT $2)",
                before,
                batch,
            )
            count = int(status.rsplit(" ", 1)[-1])
            total += count
            if count < batch:
                return total

    def transient(self, exc: BaseException) -> bool:
        """Connection trouble (retry) versus a bad row (do not)."""
        import asyncpg

        return isinstance(
            exc,
            OSError
            | TimeoutError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.TooManyConnectionsError,
        )

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()


def _pg_json(text: str) -> str:
    """JSONB refuses ``\\u0000``; replace it with U+FFFD (only when present)."""
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


async def open_trace_store(dsn: str, *, migrate: bool = True) -> TraceStore:
    """A store for ``sqlite:///…`` or ``postgresql://…``, migrating first by default."""
    dialect = dialect_of(dsn)
    if migrate:
        await upgrade(dsn)
    if dialect == "sqlite":
        return await SqliteTraceStore.connect(dsn)
    return await PostgresTraceStore.connect(dsn)
