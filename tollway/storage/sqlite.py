"""SQLite driver (stdlib ``sqlite3``, WAL): the embedded default.

Statements run synchronously on the event loop. In WAL mode with
``synchronous = NORMAL`` a commit does not fsync, so a whole transaction (a
balance reservation, a settlement) costs tens of microseconds of CPU; handing
each statement to a worker thread (aiosqlite) cost ten times that in thread
switches and made every transaction wait for its turn across several hops.

Nothing here may block the loop for long:

- ``busy_timeout`` is 0: when another process (another worker sharing the file)
  holds the write lock, ``BEGIN IMMEDIATE`` fails at once and is retried after an
  ``asyncio.sleep`` with backoff, up to ``BUSY_TIMEOUT_S``;
- automatic checkpoints are off on this connection; a background task runs a
  ``PASSIVE`` checkpoint in a thread every few seconds, so the fsync it implies
  never happens on the loop.

One process may hold several connections to a file (the trace writer has its own);
they take turns through the file's **write gate** (``write_gate``), an asyncio lock
per file and event loop, held from ``BEGIN IMMEDIATE`` to ``COMMIT``: a transaction
waits for the other connection's in order, instead of failing busy and sleeping in
backoff (which kept admissions waiting up to twice as long as the other write, and
tens of milliseconds behind a trace batch). Only other processes are met with busy.

Within one process an asyncio lock serializes transactions, and they are
**group-committed**: the first caller opens a SQLite transaction and schedules
its commit a few event-loop iterations later (``COMMIT_AFTER_ITERATIONS``, or fewer once
``COMMIT_WINDOW_S`` has passed: under load one iteration lasts milliseconds);
transactions that other tasks run before then join it, each inside a ``SAVEPOINT``, and every
member returns only once that commit is done. Under load one commit (one WAL
write) serves many reservations and settlements; alone, a caller commits almost
at once. A body that raises rolls back to its savepoint and leaves the others.
A savepoint keeps the original of every page it changes in a statement journal,
which SQLite writes to a temporary file unless ``temp_store`` is ``MEMORY``: the
connection sets it, so that journal costs no ``pwrite`` (the few pages a group
changes; reserve + settle 147–162 → 129–132 µs CPU in-process).

``run(body)`` is a transaction whose body needs nothing but its own statements (a
reservation, a settlement): it is queued, and the group runs every queued body back to
back just before its ``COMMIT``, under one ``SAVEPOINT`` for them all (none when nothing
came before them in the transaction; a body that raises has the batch run again with a
savepoint a body, so that only its own changes go: ``_run_together``). The caller waits for
that commit as a member does, so it waits no longer; but the statements no longer run
one by one between the unrelated work of hundreds of requests, each on cold CPU caches
(a reservation's ``INSERT`` cost 7 µs of CPU back to back and 21–31 µs after 4 MiB of
other work, closing it 9 against 23–36 µs), and a group holds every body that came during
its window (50 requests a commit instead of 7 under load: the hot pages are written to
the WAL once for all). A server with billing alone, 64 requests at a time: 597–711 →
465–558 µs of CPU a request. A body runs in the order it was queued, and not at all if
its caller was cancelled before the group reached it (``tests/storage/test_run.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["SqliteDatabase", "open_database", "sqlite_path", "write_gate"]

T = TypeVar("T")
_Body = Callable[[Any], Coroutine[Any, Any, Any]]  # a queued transaction body (``run``)
_Ran = tuple[asyncio.Future[Any], Any, bool]  # a body's caller, its value or error, whether ok

BUSY_TIMEOUT_S = 30.0
CHECKPOINT_INTERVAL_S = 5.0
# Event-loop iterations a group stays open for other transactions to join. Idle, an
# iteration costs microseconds; under load (64 requests at a time, every feature on) one
# iteration joined 1.05 transactions per commit (≈ 56 µs each), eight join several:
# CPU per request 800 → 560–610 µs, fixed CPU per stream 890–960 → 730–740 µs (bench e).
COMMIT_AFTER_ITERATIONS = 8
# ... or fewer, once the group has been open this long: under load an iteration lasts
# milliseconds and brings many transactions, and eight of them kept new requests'
# admissions waiting (500 paced streams, all on: admission p50 145-225 → 94-114 ms,
# p90 472-973 → 288-315 ms in traces; CPU per request unchanged within the noise).
COMMIT_WINDOW_S = 0.002


def sqlite_path(dsn: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:`` → path."""
    if not dsn.startswith("sqlite://"):
        raise ValueError(f"not a sqlite DSN: {dsn!r}")
    rest = dsn.removeprefix("sqlite://")
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    return rest.removeprefix("/") if rest.startswith("/") else rest


_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def write_gate(path: str) -> asyncio.Lock:
    """The write gate of the database file ``path`` on the running event loop: hold it
    from ``BEGIN IMMEDIATE`` to ``COMMIT`` on any connection of this process."""
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    key = os.path.realpath(path)
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = asyncio.Lock()
    return gate


_OPEN: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, SqliteDatabase]
] = weakref.WeakKeyDictionary()


def open_database(path: str) -> SqliteDatabase | None:
    """A ``SqliteDatabase`` this process has open on the file ``path`` on the running event
    loop (the first opened of them), or None. ``SqliteDatabase.shared`` hands it out again,
    and the trace writer writes through it, so that their statements join that
    connection's group commits instead of taking turns with it at the file's write gate."""
    opened = _OPEN.get(asyncio.get_running_loop())
    return None if opened is None else opened.get(os.path.realpath(path))


def _take_now(lock: asyncio.Lock) -> bool:
    """Acquire ``lock`` if that needs no wait (it is free and nobody is queued for it)."""
    if lock.locked():
        return False
    acquiring = lock.acquire()
    try:
        acquiring.send(None)
    except StopIteration:
        return True
    acquiring.close()  # it would have waited: it leaves the queue it joined
    return False


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class _SqliteTx:
    """Statements on the connection (synchronous underneath, async to the caller)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        cur = self._conn.execute(sql, args)
        try:
            rows = cur.fetchall()
            names = [d[0] for d in cur.description or ()]
        finally:
            cur.close()
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        cur = self._conn.execute(sql, args)
        try:
            row = cur.fetchone()
            if row is None:
                return None
            names = [d[0] for d in cur.description or ()]
            cur.fetchall()  # finish the statement (RETURNING needs it stepped to the end)
        finally:
            cur.close()
        return dict(zip(names, row, strict=True))

    async def execute(self, sql: str, *args: Any) -> int:
        cur = self._conn.execute(sql, args)
        try:
            return cur.rowcount
        finally:
            cur.close()

    async def insert(self, sql: str, *args: Any) -> int:
        """The row's id from the connection (``lastrowid``), not ``RETURNING id``: SQLite
        runs a ``RETURNING`` clause to the end and buffers its rows, which cost 9–13 µs an
        insert into the ledger (30.3–34.7 → 20.7–21.8 µs in-process, 50 to a commit)."""
        cur = self._conn.execute(sql, args)
        try:
            rowid = cur.lastrowid
        finally:
            cur.close()
        if rowid is None:  # pragma: no cover - an INSERT of one row always sets it
            raise sqlite3.InterfaceError(f"no row inserted by {sql!r}")
        return rowid

    async def update_returning(
        self, sql: str, *args: Any, returning: str, table: str, row_id: Any
    ) -> dict[str, Any] | None:
        """The ``UPDATE``, then a ``SELECT`` of the row by its key: not ``RETURNING``, which
        SQLite runs into an ephemeral table of its own (opened, written, read and closed
        for each statement: ≈ 14,000 instructions more than the two statements)."""
        changed = await self.execute(sql, *args)
        if changed == 0:
            return None
        if changed != 1:  # pragma: no cover - the WHERE names the row's key
            raise sqlite3.IntegrityError(f"{sql!r} changed {changed} rows of {table}")
        return await self.fetchrow(f"SELECT {returning} FROM {table} WHERE id = ?", row_id)


class SqliteDatabase:
    """One sqlite3 connection in WAL mode, used from the event loop."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._path = path
        self._tx = _SqliteTx(conn)
        self._lock = asyncio.Lock()
        # the open shared transaction: a future per member waiting for its commit
        self._group: list[asyncio.Future[None]] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._gate = write_gate(path) if path != ":memory:" else None
        self.busy_waits = 0  # times BEGIN met another process's write lock and slept
        self._queued: list[tuple[_Body, asyncio.Future[Any]]] = []
        # bodies run at once in the open group (``run_early``): told at its commit
        self._early: list[_Ran] = []
        self._opening: asyncio.Task[None] | None = None  # opens a group for queued bodies
        # the open transaction has written nothing yet: its next body runs without a
        # savepoint (if it fails, the transaction is rolled back: _run_together, run_early)
        self._clean = False
        self._holders = 1  # callers of connect/shared that have not closed it yet
        self._closed = False

    @classmethod
    async def connect(cls, dsn: str) -> SqliteDatabase:
        """Open (creating the file and its directory if needed) and set pragmas."""
        path = sqlite_path(dsn)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")  # only while opening
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA temp_store = MEMORY")  # the savepoints' statement journal
        conn.execute("PRAGMA busy_timeout = 0")
        db = cls(conn, path)
        if path != ":memory:":
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            db._checkpointer = asyncio.create_task(db._checkpoint_loop())
            opened = _OPEN.setdefault(asyncio.get_running_loop(), weakref.WeakValueDictionary())
            opened.setdefault(os.path.realpath(path), db)
        return db

    @classmethod
    async def shared(cls, dsn: str) -> SqliteDatabase:
        """The connection this process already has open on the file (``open_database``),
        or a new one (``connect``). Each caller closes it once; the connection closes with
        the last of them. Billing, limits, the dashboard, the Responses store and the
        migrations of one file thus use one connection: one write gate holder, one group
        commit for all their transactions, one page cache."""
        path = sqlite_path(dsn)
        db = open_database(path) if path != ":memory:" else None
        if db is None or db._closed:
            return await cls.connect(dsn)
        db._holders += 1
        return db

    async def _checkpoint_loop(self) -> None:
        """PASSIVE checkpoints from a thread: the WAL stays small, the loop never fsyncs."""
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            with contextlib.suppress(sqlite3.Error):
                await asyncio.to_thread(self._checkpoint_once)

    def _checkpoint_once(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    async def _retry_busy(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """Run ``sql``; while another process holds the lock, wait (asynchronously)."""
        delay = 0.0005
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute(sql, args)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                self.busy_waits += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.transaction() as tx:
            return await tx.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self.transaction() as tx:
            return await tx.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, *args)

    async def insert(self, sql: str, *args: Any) -> int:
        async with self.transaction() as tx:
            return await tx.insert(sql, *args)

    async def update_returning(
        self, sql: str, *args: Any, returning: str, table: str, row_id: Any
    ) -> dict[str, Any] | None:
        async with self.transaction() as tx:
            return await tx.update_returning(
                sql, *args, returning=returning, table=table, row_id=row_id
            )

    def transaction(self) -> _Transaction:
        """A write transaction (``BEGIN IMMEDIATE``), possibly shared with concurrent callers.

        Returns after the commit that includes it; raises if that commit failed.
        """
        return _Transaction(self)

    async def run(self, body: Callable[[_SqliteTx], Coroutine[Any, Any, T]]) -> T:
        """``body(tx)`` in a write transaction, as ``async with transaction() as tx`` would
        run it, but queued: the group runs it just before its commit, with the other
        queued bodies (see the top). ``body`` may await only ``tx``'s statements (which
        never suspend). Returns after that commit; raises what the body raised, or the
        commit's error."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._queued.append((body, done))
        if self._group is None and not self._open_inline():
            self._ensure_group()
        return await done

    def run_early(
        self, body: Callable[[_SqliteTx], Coroutine[Any, Any, T]]
    ) -> tuple[T, asyncio.Future[T], asyncio.Future[T]] | None:
        """``body(tx)`` at once, in the caller's step, in the open group (opened here when
        the file's write gate is free), ahead of the bodies queued for that group: (its
        value, and two futures of the same value that are done once the group has
        committed, or fail with the commit's error: one to await directly, which a
        cancelled awaiter cancels, and one that only the commit ends). None when it cannot
        run at once (a member is mid-body, or no group can be opened in this step): then
        ``run`` it. A body that raises raises here, its savepoint rolled back. The caller
        may act on the value before the commit; what it must not do before then is
        anything the value is not yet durable enough for (a reservation: deliver output)."""
        if self._closed or self._lock.locked():
            return None
        if self._group is None and not self._open_inline():
            return None
        conn = self._conn
        if self._clean:  # the group's first body: the transaction is its savepoint
            try:
                value = _drive(body(self._tx))
            except BaseException:
                self._drop_clean_group()
                raise
            self._clean = False
        else:
            conn.execute("SAVEPOINT early")
            try:
                value = _drive(body(self._tx))
            except BaseException:
                conn.execute("ROLLBACK TO early")
                conn.execute("RELEASE early")
                raise
            conn.execute("RELEASE early")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        kept: asyncio.Future[T] = loop.create_future()
        done.add_done_callback(_seen)  # its caller may be gone: no "never retrieved" noise
        self._early.append((done, value, True))
        self._early.append((kept, value, True))
        return value, done, kept

    def _open_inline(self) -> bool:
        """Open a group for the queued bodies here, in the caller's step, when nothing
        stands in the way: no member mid-body or opening a group (the lock), the file's
        write gate free at once and no other process writing. True if it did; else the
        opener task (``_ensure_group``) waits for what is in the way. An opener task still
        pending then joins this group as an empty member (one whose group has committed
        but which has not finished yet used to keep new bodies waiting for it and then for
        a new opener: four iterations a reservation under load).

        Each hand-over between tasks costs a loop iteration, and under load an iteration
        lasts as long as every open stream's chunk work (tens of milliseconds): with the
        opener task a reservation waited three of them (the opener's step, the commit,
        the caller's wake-up), now two."""
        if self._lock.locked():  # a member is mid-body, or opening a group (at the gate)
            return False
        gate = self._gate
        if gate is not None and not _take_now(gate):
            return False
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # another process writes (busy), or worse: the opener decides
            if gate is not None:
                gate.release()
            return False
        self._group = []
        self._clean = True
        self._commit_later(self._group)
        return True

    def _drop_clean_group(self) -> None:
        """The first body of a group that had written nothing failed: roll its transaction
        back and end the group (its members, if any, wrote nothing: they are done); the
        bodies queued meanwhile get a group of their own."""
        group, self._group = self._group, None
        self._clean = False
        with contextlib.suppress(sqlite3.Error):  # (SQLite may have rolled it back itself)
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self._open_gate()
        for waiter in group or ():
            if not waiter.done():
                waiter.set_result(None)
        self._ensure_group()

    def _commit_later(self, group: list[asyncio.Future[None]]) -> None:
        """Commit ``group`` once the loop has run the tasks that are ready in the next few
        iterations (``COMMIT_AFTER_ITERATIONS``, ``COMMIT_WINDOW_S``): the transactions
        they start join it and share its commit."""
        loop = asyncio.get_running_loop()
        loop.call_soon(self._commit_soon, group, COMMIT_AFTER_ITERATIONS,
                       loop.time() + COMMIT_WINDOW_S)

    def _ensure_group(self) -> None:
        """Queued bodies and no group open or opening: open one for them."""
        if self._queued and self._group is None and (
            self._opening is None or self._opening.done()
        ):
            self._opening = asyncio.get_running_loop().create_task(self._open_for_queued())

    async def _open_for_queued(self) -> None:
        """Open a group (as a member with an empty body) for the bodies queued meanwhile."""
        try:
            async with self.transaction():
                pass
        except Exception as exc:  # noqa: BLE001 (BEGIN failed: the queued bodies cannot run)
            queued, self._queued = self._queued, []
            for _, done in queued:
                if not done.done():
                    done.set_exception(exc)
        finally:
            if self._opening is asyncio.current_task():
                self._opening = None
                self._ensure_group()  # cancelled before its group opened: bodies still wait

    def _run_queued(self, ran: list[_Ran]) -> None:
        """Run every queued body of a caller still waiting; add each outcome to ``ran``
        (told once the group commits).

        The bodies queued for the group run back to back under one savepoint, or none when
        the transaction has written nothing yet (it is then theirs): a savepoint copies
        every page its bodies change into the statement journal, once a savepoint, and a
        group's bodies change the same few pages (the account's, each index's right edge):
        one copy for them all instead of one a body (a billed request's two bodies copied
        ≈ 130,000 instructions' worth). If a body raises, the batch is rolled back and run
        again with a savepoint a body (``_run_each``), so that only that body's changes go.
        A body only runs its statements and returns its value (``run``), so running it
        twice leaves nothing twice. If a savepoint statement itself fails (or beginning
        again, when another process took the file's lock in between), the rest of the batch
        fails with it and the error is raised: the group must not commit."""
        while self._queued:
            queued, self._queued = self._queued, []
            batch = [(body, done) for body, done in queued if not done.done()]  # (cancelled:
            if batch and not self._run_together(batch, ran):  # its body never runs)
                self._run_each(batch, ran)

    def _run_together(self, batch: list[tuple[_Body, asyncio.Future[Any]]], ran: list[_Ran]
                      ) -> bool:
        """``batch`` under one savepoint (none if the transaction is clean); False, with
        everything of it rolled back, if a body raised."""
        conn = self._conn
        clean = self._clean
        values: list[Any] = []
        try:
            if not clean:
                conn.execute("SAVEPOINT batch")
            for body, _ in batch:
                try:
                    values.append(_drive(body(self._tx)))
                except BaseException:  # noqa: BLE001 (run again alone, it goes to its caller)
                    if clean:
                        if conn.in_transaction:  # (SQLite may have rolled it back itself)
                            conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                    else:
                        conn.execute("ROLLBACK TO batch")
                        conn.execute("RELEASE batch")
                    return False
            if not clean:
                conn.execute("RELEASE batch")
        except sqlite3.Error as exc:  # the savepoint machinery, not a body
            ran.extend((done, exc, False) for _, done in batch)
            raise
        self._clean = False
        ran.extend((done, value, True) for (_, done), value in zip(batch, values, strict=True))
        return True

    def _run_each(self, batch: list[tuple[_Body, asyncio.Future[Any]]], ran: list[_Ran]
                  ) -> None:
        """``batch`` again, each body in its own savepoint (one of them raised)."""
        conn = self._conn
        for index, (body, done) in enumerate(batch):
            if done.done():
                continue
            try:
                conn.execute("SAVEPOINT queued")
                try:
                    value: Any = _drive(body(self._tx))
                except BaseException as exc:  # noqa: BLE001 (it goes to the caller)
                    conn.execute("ROLLBACK TO queued")
                    conn.execute("RELEASE queued")
                    ran.append((done, exc, False))
                else:
                    conn.execute("RELEASE queued")
                    ran.append((done, value, True))
                    self._clean = False
            except sqlite3.Error as exc:  # the savepoint machinery, not the body
                ran.extend((left, exc, False) for _, left in batch[index:])
                raise

    def _commit_soon(
        self, group: list[asyncio.Future[None]], iterations: int = 1, until: float = 0.0
    ) -> None:
        if self._group is not group:
            return
        loop = asyncio.get_running_loop()
        # more may join (unless the window is over), or a member is mid-body
        if (iterations > 1 and loop.time() < until) or self._lock.locked():
            loop.call_soon(self._commit_soon, group, max(iterations - 1, 1), until)
            return
        self._commit_group()

    def _commit_group(self) -> None:
        if self._group is None:
            return
        failed: sqlite3.Error | None = None
        ran, self._early = self._early, []  # bodies run at once come first: they ran first
        try:
            self._run_queued(ran)
        except sqlite3.Error as exc:  # a savepoint statement failed: no commit
            failed = exc
        group, self._group = self._group, None
        if failed is None:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                failed = exc
        if failed is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._open_gate()
            for waiter in group:  # members re-raise it themselves
                if not waiter.done():
                    waiter.set_exception(failed)
            for done, _, _ in ran:
                if not done.done():
                    done.set_exception(failed)
            return
        self._open_gate()
        for waiter in group:
            if not waiter.done():  # a member whose task was cancelled no longer waits
                waiter.set_result(None)
        for done, value, ok in ran:
            if not done.done():
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(value)

    def _open_gate(self) -> None:
        """The group's transaction is over: let the file's other connections write."""
        if self._gate is not None and self._gate.locked():
            self._gate.release()

    async def close(self) -> None:
        """Close the connection (a shared one: once its last holder closes it). A group
        still open commits first (with the bodies queued for it); a body that finds the
        database closed fails with ``OperationalError``."""
        self._holders -= 1
        if self._holders > 0 or self._closed:
            return
        self._closed = True
        opened = _OPEN.get(asyncio.get_running_loop())
        key = os.path.realpath(self._path)
        if opened is not None and opened.get(key) is self:
            del opened[key]
        if self._group is not None and not self._lock.locked():
            self._commit_group()
        queued, self._queued = self._queued, []
        for _, done in queued:
            if not done.done():
                done.set_exception(sqlite3.OperationalError("the database was closed"))
        early, self._early = self._early, []  # their group never committed
        for done, _, _ in early:
            if not done.done():
                done.set_exception(sqlite3.OperationalError("the database was closed"))
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self._path != ":memory:":
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._conn.close()


class _Transaction:
    """``SqliteDatabase.transaction()``: joins (or opens) the group under the lock, runs
    the body in a savepoint (the first member: the transaction itself), and waits for
    the group's commit on a future of its own, so that a member's cancellation cancels
    only its own wait. (A class, not a generator-based context manager, and a future
    per member rather than ``asyncio.shield`` of a shared one: a few µs per transaction,
    two per billed request.)"""

    __slots__ = ("_db", "_first", "_group")

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def __aenter__(self) -> _SqliteTx:
        db = self._db
        await db._lock.acquire()
        try:
            first = db._group is None
            if first:
                gate = db._gate
                if gate is not None:
                    await gate.acquire()  # released by _open_gate
                try:
                    await db._retry_busy("BEGIN IMMEDIATE")
                except BaseException:
                    if gate is not None:
                        gate.release()
                    raise
                db._group = []
            else:
                db._conn.execute("SAVEPOINT member")
        except BaseException:
            db._lock.release()
            raise
        db._clean = False  # a member may write anything
        self._first = first
        self._group = db._group
        return db._tx

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        db, group = self._db, self._group
        assert group is not None
        try:
            if exc_type is not None:
                if self._first:  # nobody else is in the group yet: end it
                    db._group = None
                    try:
                        db._conn.execute("ROLLBACK")
                    finally:
                        db._open_gate()
                        db._ensure_group()  # bodies queued for this group: another one
                else:
                    db._conn.execute("ROLLBACK TO member")
                    db._conn.execute("RELEASE member")
                return  # the body's exception goes on
            if not self._first:
                db._conn.execute("RELEASE member")
            if self._first:
                db._commit_later(group)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            group.append(waiter)
        finally:
            db._lock.release()
        await waiter


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a failed future's exception as retrieved (nobody else may ask for it)."""
    if not future.cancelled():
        future.exception()


def _drive(body: Coroutine[Any, Any, T]) -> T:
    """Run a queued body's coroutine to its end at once (its statements never suspend)."""
    try:
        body.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    body.close()
    raise RuntimeError("a queued transaction body waited for something other than its statements")
