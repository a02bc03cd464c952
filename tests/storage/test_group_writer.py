"""``GroupWriter``: writes of one key gathered while one is written, and what happens to
them when a batch cannot be written whole or a caller is cancelled.

The PostgreSQL statements behind it are tested in ``test_store.py``; here the batch and
the lone write are plain coroutines that record what they were given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import pytest

from tollway.storage.group_writer import GroupWriter


class Book:
    """Records batches and lone writes; a batch holding ``"bad"`` cannot be written."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.alone: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.held: dict[str, asyncio.Event] = {}  # writes held by their own gate instead

    async def write_batch(self, key: Hashable, writes: list[str]) -> list[str] | None:
        await asyncio.sleep(0)  # a round trip
        own = [self.held[w] for w in writes if w in self.held]
        for gate in own or [self.gate]:
            await gate.wait()
        if "bad" in writes and len(writes) > 1:
            return None
        if writes == ["bad"]:
            raise ValueError("bad write")
        self.batches.append(writes)
        return [f"{key}:{w}" for w in writes]

    async def write_alone(self, write: str) -> str:
        if write == "bad":
            raise ValueError("bad write")
        self.alone.append(write)
        return f"alone:{write}"


def test_writes_that_come_while_one_is_written_go_together() -> None:
    async def go() -> None:
        book = Book()
        writer: GroupWriter[str] = GroupWriter(book.write_batch, book.write_alone)
        book.gate.clear()
        first = asyncio.create_task(writer.submit("k", "w0"))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(writer.submit("k", f"w{i}")) for i in range(1, 6)]
        other = asyncio.create_task(writer.submit("other", "x"))  # another key: its own
        await asyncio.sleep(0)
        book.gate.set()
        assert await first == "k:w0"
        assert await asyncio.gather(*rest) == [f"k:w{i}" for i in range(1, 6)]
        assert await other == "other:x"
        assert sorted(book.batches) == [["w0"], [f"w{i}" for i in range(1, 6)], ["x"]]
        assert writer.batches == 3

    asyncio.run(asyncio.wait_for(go(), 10))  # a stranded write fails, not hangs


def test_a_batch_that_cannot_be_written_is_written_one_by_one() -> None:
    async def go() -> None:
        book = Book()
        writer: GroupWriter[str] = GroupWriter(book.write_batch, book.write_alone)
        book.gate.clear()
        first = asyncio.create_task(writer.submit("k", "w0"))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(writer.submit("k", w)) for w in ("a", "bad", "b")]
        await asyncio.sleep(0)
        book.gate.set()
        assert await first == "k:w0"
        got = await asyncio.gather(*rest, return_exceptions=True)
        assert got[0] == "alone:a" and got[2] == "alone:b"
        assert isinstance(got[1], ValueError)  # only its own caller meets the error
        assert book.alone == ["a", "b"]
        with pytest.raises(ValueError):  # a first write that fails alone: its caller's
            await writer.submit("k", "bad")

    asyncio.run(asyncio.wait_for(go(), 10))  # a stranded write fails, not hangs


def test_the_writes_waiting_on_a_cancelled_first_write_go_on() -> None:
    """The first write runs in its caller's task; that caller cancelled (its request
    ended) must not strand the writes that came meanwhile."""

    async def go() -> None:
        book = Book()
        writer: GroupWriter[str] = GroupWriter(book.write_batch, book.write_alone)
        book.gate.clear()
        first = asyncio.create_task(writer.submit("k", "w0"))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(writer.submit("k", f"w{i}")) for i in range(1, 4)]
        waiting_cancelled = asyncio.create_task(writer.submit("k", "w4"))
        await asyncio.sleep(0)
        first.cancel()
        waiting_cancelled.cancel()  # a waiting caller cancelled leaves its write to the batch
        await asyncio.sleep(0)
        book.gate.set()
        assert await asyncio.gather(*rest) == [f"k:w{i}" for i in range(1, 4)]
        assert first.cancelled() and waiting_cancelled.cancelled()
        assert book.batches == [["w1", "w2", "w3", "w4"]]
        assert await writer.submit("k", "w5") == "k:w5"  # the key is free again

    asyncio.run(asyncio.wait_for(go(), 10))  # a stranded write fails, not hangs


def test_a_stopped_writer_fails_its_waiting_writes() -> None:
    async def go() -> None:
        book = Book()
        writer: GroupWriter[str] = GroupWriter(book.write_batch, book.write_alone)
        book.held = {"w0": asyncio.Event(), "w1": asyncio.Event()}
        first = asyncio.create_task(writer.submit("k", "w0"))
        await asyncio.sleep(0)
        second = asyncio.create_task(writer.submit("k", "w1"))
        await asyncio.sleep(0)
        book.held["w0"].set()
        assert await first == "k:w0"  # and [w1]'s batch now waits in a task of its own
        third = asyncio.create_task(writer.submit("k", "w2"))
        await asyncio.sleep(0.01)
        writers = [t for t in asyncio.all_tasks()
                   if getattr(t.get_coro(), "__qualname__", "") == "GroupWriter._run"]
        assert len(writers) == 1
        writers[0].cancel()  # stop that task (shutdown)
        got: Any = await asyncio.gather(second, third, return_exceptions=True)
        assert all(isinstance(g, RuntimeError) for g in got), got

    asyncio.run(asyncio.wait_for(go(), 10))  # a stranded write fails, not hangs
