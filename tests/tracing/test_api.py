"""The trace endpoints: account scoping, filters, cursor pagination, admin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.tracing.conftest import make_ctx
from tollway.errors import AuthenticationError, InvalidRequest, NotFound, PermissionDenied
from tollway.tracing.api import TraceAPI, decode_cursor, encode_cursor, parse_time
from tollway.tracing.record import build_record
from tollway.tracing.store import open_trace_store
from tollway.tracing.writer import TraceWriter

BASE = 1_750_000_000.0


@dataclass
class Auth:
    account_id: str


def req(account: str | None = "acct_1", *, query: dict[str, str] | None = None,
        rid: str | None = None, admin: bool = False) -> dict[str, Any]:
    return {
        "method": "GET", "path": "/v1/traces", "headers": {},
        "path_params": {"request_id": rid} if rid else {},
        "query": query or {}, "auth": Auth(account) if account else None, "is_admin": admin,
    }


def with_api(dsn: str, body: Callable[[TraceAPI], Awaitable[None]]) -> None:
    async def main() -> None:
        store = await open_trace_store(dsn)
        writer = TraceWriter(store)
        for i in range(25):  # acct_1: 25 traces, one per second, two models, some errors
            writer.submit(build_record(make_ctx(
                f"req_a{i:02d}", received_at=BASE + i, model="m1" if i % 2 else "m2",
                status=502 if i % 5 == 0 else 200)))
        for i in range(3):
            writer.submit(build_record(make_ctx(f"req_b{i}", account_id="acct_2",
                                                received_at=BASE + i)))
        await writer.flush()
        try:
            await body(TraceAPI(store))
        finally:
            await store.close()

    asyncio.run(main())


def test_own_trace_found_other_account_404(dsn: str) -> None:
    async def body(api: TraceAPI) -> None:
        status, trace = await api.get_trace(req(rid="req_a03"))
        assert status == 200 and trace["id"] == "req_a03" and trace["account_id"] == "acct_1"
        with pytest.raises(NotFound):
            await api.get_trace(req("acct_2", rid="req_a03"))
        with pytest.raises(NotFound):
            await api.get_trace(req(rid="req_missing"))
        with pytest.raises(AuthenticationError):
            await api.get_trace(req(None, rid="req_a03"))

    with_api(dsn, body)


def test_filters(dsn: str) -> None:
    async def body(api: TraceAPI) -> None:
        async def ids(**query: str) -> list[str]:
            _, page = await api.list_traces(req(query={"limit": "100", **query}))
            return [t["id"] for t in page["data"]]

        everything = await ids()
        assert len(everything) == 25 and everything[0] == "req_a24"  # newest first
        assert all(i.startswith("req_a") for i in everything)
        assert len(await ids(model="m1")) == 12
        assert await ids(status="502") == ["req_a20", "req_a15", "req_a10", "req_a05", "req_a00"]
        assert await ids(status="5xx") == await ids(status="error")
        assert len(await ids(status="ok")) == 20
        assert await ids(since=str(BASE + 22)) == ["req_a24", "req_a23", "req_a22"]
        assert await ids(until="2025-06-15T15:06:43Z") == ["req_a02", "req_a01", "req_a00"]
        assert await ids(since=str(BASE + 3), until=str(BASE + 5), model="m1") == ["req_a03"]
        for bad in ({"status": "teapot"}, {"since": "yesterday"}, {"limit": "101"},
                    {"limit": "0"}, {"cursor": "garbage!"}):
            with pytest.raises(InvalidRequest):
                await api.list_traces(req(query=bad))

    with_api(dsn, body)


def test_cursor_pagination(dsn: str) -> None:
    async def body(api: TraceAPI) -> None:
        seen: list[str] = []
        query: dict[str, str] = {"limit": "10"}
        pages = 0
        while True:
            _, page = await api.list_traces(req(query=query))
            pages += 1
            seen += [t["id"] for t in page["data"]]
            assert "bodies" not in page["data"][0]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                break
            query = {"limit": "10", "cursor": page["next_cursor"]}
        assert pages == 3 and len(seen) == 25 and len(set(seen)) == 25
        assert seen == sorted(seen, reverse=True)

    with_api(dsn, body)


def test_admin_sees_all(dsn: str) -> None:
    async def body(api: TraceAPI) -> None:
        _, trace = await api.admin_get_trace(req(None, rid="req_b1", admin=True))
        assert trace["account_id"] == "acct_2"
        _, page = await api.admin_list_traces(req(None, query={"limit": "100"}, admin=True))
        assert len(page["data"]) == 28
        _, page = await api.admin_list_traces(
            req(None, query={"account_id": "acct_2"}, admin=True))
        assert [t["id"] for t in page["data"]] == ["req_b2", "req_b1", "req_b0"]
        with pytest.raises(PermissionDenied):
            await api.admin_list_traces(req("acct_1"))

    with_api(dsn, body)


def test_cursor_and_time_parsing() -> None:
    assert decode_cursor(encode_cursor(1.5, 42)) == (1.5, 42)
    assert parse_time("1750000000", "since") == 1_750_000_000.0
    assert parse_time("2025-06-15T15:06:40Z", "since") == 1_750_000_000.0
    assert parse_time("2025-06-15T15:06:40", "since") == 1_750_000_000.0  # naive = UTC
    assert parse_time("2025-06-15T17:06:40+02:00", "since") == 1_750_000_000.0


def test_routes_listed() -> None:
    api = TraceAPI(None)
    assert [(m, p, a) for m, p, _h, a in api.routes()] == [
        ("GET", "/v1/traces", "key"), ("GET", "/v1/traces/{request_id}", "key"),
        ("GET", "/admin/traces", "admin"), ("GET", "/admin/traces/{request_id}", "admin"),
    ]
