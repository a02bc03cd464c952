"""``tollway traces``: a table by default, one trace in detail, --json."""

from __future__ import annotations

import argparse
import asyncio
import io

import orjson
import pytest

from tests.tracing.conftest import make_ctx
from tollway.tracing.cli import register
from tollway.tracing.record import build_record
from tollway.tracing.store import open_trace_store
from tollway.tracing.writer import TraceWriter


@pytest.fixture
def db(tmp_path: object) -> str:
    dsn = f"sqlite:///{tmp_path}/cli.db"

    async def fill() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store)
        writer.submit(build_record(make_ctx("req_one", received_at=1_750_000_000, fallback=True)))
        writer.submit(build_record(make_ctx("req_two", received_at=1_750_000_001,
                                            model="other", status=502)))
        await writer.flush()
        await store.close()

    asyncio.run(fill())
    return dsn


def cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="tollway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["traces", *argv])
    out = io.StringIO()
    return args.func(args, out), out.getvalue()


def test_table(db: str) -> None:
    code, out = cli("--database", db)
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split()[:3] == ["RECEIVED", "REQUEST", "ID"]
    assert "req_two" in first and "502" in first and "req_one" in second
    assert "100ms" in second and "7/11" in second and "0.00011" in second
    code, out = cli("--database", db, "--model", "other", "--limit", "5")
    assert code == 0 and len(out.splitlines()) == 2


def test_detail_and_json(db: str) -> None:
    code, out = cli("req_one", "--database", db)
    assert code == 0
    assert "request      req_one" in out and "attempt      sim-b: error 503" in out
    code, out = cli("req_one", "--database", db, "--json")
    assert orjson.loads(out)["attempts"][1]["deployment"] == "sim-a"
    code, out = cli("--database", db, "--json")
    assert [t["id"] for t in orjson.loads(out)] == ["req_two", "req_one"]


def test_missing_and_bad_input(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("req_nope", "--database", db)[0] == 1
    assert cli("--database", db, "--status", "teapot")[0] == 2
    assert "status" in capsys.readouterr().err


def test_detail_shows_stored_bodies(tmp_path: object) -> None:
    dsn = f"sqlite:///{tmp_path}/bodies.db"
    bodies = {"request": {"messages": [{"role": "user", "content": "hi"}]},
              "response": {"choices": [{"message": {"content": "hello"}}]}, "truncated": False}

    async def fill() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store)
        writer.submit(build_record(make_ctx("req_body"), bodies=bodies))
        writer.submit(build_record(make_ctx("req_none")))
        await writer.flush()
        await store.close()

    asyncio.run(fill())
    code, out = cli("req_body", "--database", dsn)
    assert code == 0
    assert 'request      {"messages":[{"role":"user","content":"hi"}]}' in out
    assert 'response     {"choices":[{"message":{"content":"hello"}}]}' in out
    code, out = cli("req_none", "--database", dsn)
    assert code == 0 and "response" not in out
