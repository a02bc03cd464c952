"""Migrations, the batched writer and retention, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.tracing.conftest import make_ctx
from tollway.storage.migrate import upgrade
from tollway.tracing.record import build_record
from tollway.tracing.store import (
    TraceQuery,
    TraceRow,
    _insert_sizes,
    open_trace_store,
    record_to_row,
)
from tollway.tracing.writer import TraceWriter


def test_migrations_apply_once(dsn: str) -> None:
    async def main() -> None:
        assert "0100_traces" in await upgrade(dsn)
        assert await upgrade(dsn) == []

    asyncio.run(main())


def test_batched_writes_visible_within_one_second(dsn: str) -> None:
    async def main() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store, flush_interval=0.2, batch_size=50)
        await writer.start()
        try:
            records = [build_record(make_ctx(f"req_{i:04d}")) for i in range(120)]
            for record in records:
                assert writer.submit(record)
            # submit only appends: nothing reached the store before the loop ran the writer
            assert writer.stats.written == 0
            ended = time.monotonic()
            while await store.get("req_0119", "acct_1") is None:
                assert time.monotonic() - ended < 1.0, "trace not visible within 1 s"
                await asyncio.sleep(0.02)
            assert await store.get("req_0000", "acct_1") is not None
        finally:
            await writer.stop()
            await store.close()
        assert writer.stats.written == 120 and writer.stats.dropped == 0

    asyncio.run(main())


def test_stop_flushes_everything(dsn: str) -> None:
    async def main() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store, flush_interval=1.0, batch_size=1000)
        await writer.start()
        for i in range(10):
            writer.submit(build_record(make_ctx(f"req_{i}")))
        await writer.stop()
        found = await store.find(TraceQuery(account_id="acct_1", limit=100))
        assert len(found) == 10
        assert writer.queued == 0
        await store.close()

    asyncio.run(main())


def test_client_chosen_request_ids_cannot_collide_across_accounts(dsn: str) -> None:
    """X-Request-Id comes from the client: an id reused by another account or by a
    retry must neither hide a trace nor leak one."""
    async def main() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store)
        writer.submit(build_record(make_ctx("my-id", account_id="acct_evil", model="first")))
        writer.submit(build_record(make_ctx("my-id", account_id="acct_1", model="second")))
        writer.submit(build_record(make_ctx("my-id", account_id="acct_1", model="third")))
        await writer.flush()
        mine = await store.get("my-id", "acct_1")
        theirs = await store.get("my-id", "acct_evil")
        assert mine is not None and mine["model"] == "third"  # the newest of mine
        assert theirs is not None and theirs["model"] == "first"
        assert len(await store.find(TraceQuery(account_id="acct_1"))) == 2
        await store.close()

    asyncio.run(main())


def test_retention_prunes_old_traces(dsn: str) -> None:
    async def main() -> None:
        store = await open_trace_store(dsn)
        now = time.time()
        writer = TraceWriter(store, retention_days=7)
        writer.submit(build_record(make_ctx("req_old", received_at=now - 8 * 86400)))
        writer.submit(build_record(make_ctx("req_new", received_at=now - 6 * 86400)))
        await writer.flush()
        assert await writer.prune_now() == 1
        assert await store.get("req_old", None) is None
        assert await store.get("req_new", None) is not None
        await store.close()

    asyncio.run(main())


def test_bodies_roundtrip_and_nul_characters(dsn: str) -> None:
    async def main() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store)
        bodies = {"request": [{"role": "user", "content": "a\x00b \\u0000 ok"}]}
        writer.submit(build_record(make_ctx("req_b"), bodies=bodies))
        await writer.flush()
        got = await store.get("req_b", "acct_1")
        assert got is not None
        content = got["bodies"]["request"][0]["content"]
        assert content.startswith("a") and content.endswith("b \\u0000 ok")
        listed = await store.find(TraceQuery(account_id="acct_1"))
        assert "bodies" not in listed[0][1]
        assert writer.stats.written == 1 and writer.stats.rejected == 0
        await store.close()

    asyncio.run(main())


class DownStore:
    """A store whose database is unreachable until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.rows: list[TraceRow] = []

    async def insert_many(self, rows: Sequence[TraceRow]) -> None:
        if not self.up:
            raise ConnectionRefusedError("database down")
        self.rows.extend(rows)

    def transient(self, exc: BaseException) -> bool:
        return isinstance(exc, OSError)

    async def get(self, request_id: str, account_id: str | None) -> Any:
        return None

    async def find(self, query: TraceQuery) -> list[dict[str, Any]]:
        return []

    async def prune(self, before: float, batch: int = 5000) -> int:
        return 0

    async def close(self) -> None:
        return None


def test_bounded_queue_drops_while_database_is_down() -> None:
    async def main() -> None:
        store = DownStore()
        writer = TraceWriter(store, flush_interval=0.01, batch_size=5, max_queue=20)  # type: ignore[arg-type]
        await writer.start()
        for i in range(30):
            writer.submit(build_record(make_ctx(f"req_{i}")))
        await asyncio.sleep(0.1)
        assert writer.stats.dropped == 10 and writer.queued == 20
        assert writer.stats.failed_flushes >= 1
        store.up = True
        await writer.stop()
        assert len(store.rows) == 20 and writer.stats.written == 20

    asyncio.run(main())


@given(st.integers(0, 5000))
def test_a_batch_is_cut_into_few_statement_sizes(rows: int) -> None:
    """Every batch size uses statements from one small set of row counts, so the writer
    connection holds at most 8 prepared inserts, whatever the load's batch sizes."""
    sizes = _insert_sizes(rows)
    assert sum(sizes) == rows
    assert set(sizes) <= {99, 64, 32, 16, 8, 4, 2, 1}
    assert sizes == sorted(sizes, reverse=True) and sizes.count(64) <= 1


def test_batches_of_every_size_are_written_whole(tmp_path: Path) -> None:
    async def main() -> None:
        store = await open_trace_store(f"sqlite:///{tmp_path / 't.db'}")
        writer = TraceWriter(store, flush_interval=0.05, batch_size=1000)
        await writer.start()
        try:
            n = 0
            for size in (1, 3, 63, 98, 99, 100, 231):
                for _ in range(size):
                    assert writer.submit(build_record(make_ctx(f"req_{n:05d}")))
                    n += 1
                await writer.flush()
            found = await store.find(TraceQuery(account_id="acct_1", limit=1000))
            assert sorted(t["id"] for _seq, t in found) == [f"req_{i:05d}" for i in range(n)]
        finally:
            await writer.stop()
            await store.close()

    asyncio.run(main())


def test_the_writer_lets_the_write_gate_go_as_soon_as_its_thread_is_done(tmp_path: Path) -> None:
    """A transaction waiting for the file's write gate behind a trace batch gets it in the
    loop iteration after the batch's thread is done, not one later, when the writer's task
    resumes: under load an iteration lasts milliseconds, and admissions wait here."""
    import threading

    from tollway.tracing.store import _Writer

    async def main() -> tuple[int, int]:
        writer = _Writer(str(tmp_path / "gate.db"))
        gate = asyncio.Lock()
        loop = asyncio.get_running_loop()
        ticks, running = 0, True

        def tick() -> None:  # one per loop iteration
            nonlocal ticks
            ticks += 1
            if running:
                loop.call_soon(tick)

        release = threading.Event()

        async def batch() -> int:  # the iteration in which the writer's task resumes
            assert await writer.run_holding(gate, lambda conn: release.wait(5)) is True
            return ticks

        holder = asyncio.create_task(batch())
        while not gate.locked():
            await asyncio.sleep(0)
        got_at = -1

        async def waiter() -> None:
            nonlocal got_at
            async with gate:
                got_at = ticks

        other = asyncio.create_task(waiter())
        loop.call_soon(tick)
        await asyncio.sleep(0.01)
        release.set()
        resumed_at = await holder
        await other
        running = False
        await writer.close()
        return got_at, resumed_at

    got_at, resumed_at = asyncio.run(main())
    assert 0 <= got_at <= resumed_at


def test_sqlite_reader_opens_on_first_read_and_once(tmp_path: Path) -> None:
    """A process that only writes traces holds no reader thread or connection; the first
    reads (several at once) open one, and close closes it."""
    import threading

    async def main() -> None:
        store = await open_trace_store(f"sqlite:///{tmp_path}/t.db")
        threads = threading.active_count()
        await store.insert_many([record_to_row(build_record(make_ctx("req_a")))])
        assert store._r is None and threading.active_count() == threads  # type: ignore[attr-defined]
        got = await asyncio.gather(*(store.get("req_a", None) for _ in range(5)))
        assert all(g is not None and g["id"] == "req_a" for g in got)
        assert store._r is not None and threading.active_count() == threads + 1  # type: ignore[attr-defined]
        await store.close()
        assert store._r is None

    asyncio.run(main())


def test_a_lookup_binds_its_named_placeholders_from_a_mapping(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """sqlite3 takes ``?1`` and ``:p1`` for named parameters; binding one from a sequence
    warns since Python 3.12 and raises from 3.14: every statement the trace store reads
    with that names its parameters must bind them from a mapping."""
    import re

    import aiosqlite

    bound: list[tuple[str, Any]] = []
    real_execute = aiosqlite.Connection.execute

    def spy(self: Any, sql: str, parameters: Any = None) -> Any:
        bound.append((sql, parameters))
        return real_execute(self, sql, parameters)

    monkeypatch.setattr(aiosqlite.Connection, "execute", spy)

    async def main() -> None:
        store = await open_trace_store(f"sqlite:///{tmp_path / 't.db'}")
        writer = TraceWriter(store)
        writer.submit(build_record(make_ctx("req-named", account_id="acct_1")))
        await writer.flush()
        assert (await store.get("req-named", "acct_1")) is not None
        assert (await store.get("req-named", None)) is not None
        await store.close()

    asyncio.run(main())
    named = [(sql, p) for sql, p in bound if re.search(r"[?:][A-Za-z0-9_]", sql)]
    assert named, "no lookup with named parameters was seen"
    assert all(isinstance(p, dict) for _, p in named), named
