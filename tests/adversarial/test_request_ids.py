"""A client's X-Request-Id is a label, never a key (issue 12, item 5).

Reusing one, within an account or across accounts, is harmless: reservations,
ledger entries and traces are keyed by tollway's own id; the client's id is echoed
and finds the caller's own newest trace, never another account's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.support.books import ADMIN, PRICES, admin_trace, books, new_account
from tests.support.servers import run_tollway

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hello ids"}]


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A tollway with billing and traces, and two accounts with a key each."""
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path_factory.mktemp('ids') / 'tollway.db'}"
        yield from _serve(dsn)
        return
    from tests.storage.conftest import PG_URL, _pg

    schema = f"ids_{uuid.uuid4().hex[:12]}"
    problem = _run(_pg(f"CREATE SCHEMA {schema}"))
    if problem:
        pytest.skip(problem)
    try:
        yield from _serve(f"{PG_URL}{'&' if '?' in PG_URL else '?'}search_path={schema}")
    finally:
        _run(_pg(f"DROP SCHEMA {schema} CASCADE"))


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _serve(dsn: str) -> Iterator[dict[str, Any]]:
    alice, alice_key = new_account(dsn, "alice")
    bob, bob_key = new_account(dsn, "bob")
    config = {
        "database": dsn, "admin_key": ADMIN, "billing": {"enabled": True},
        "providers": {"sim": {"type": "simulated"}},
        "models": {"echo": {"deployments": [{"provider": "sim", "model": "echo",
                                             "prices": PRICES}]}},
    }
    with run_tollway(config) as url:
        yield {"url": url, "dsn": dsn, "alice": (alice, alice_key), "bob": (bob, bob_key)}


def chat(gw: dict[str, Any], who: str, *, client_id: str | None = None,
         stream: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gw[who][1]}"}
    if client_id is not None:
        headers["X-Request-Id"] = client_id
    r = httpx.post(gw["url"] + CHAT, headers=headers,
                   json={"model": "echo", "messages": MESSAGES, "stream": stream})
    assert r.status_code == 200, r.text
    return r


def own_id(r: httpx.Response) -> str:
    return r.headers["x-tollway-request-id"]


def trace_as(gw: dict[str, Any], who: str, some_id: str) -> httpx.Response:
    return httpx.get(f"{gw['url']}/v1/traces/{some_id}",
                     headers={"Authorization": f"Bearer {gw[who][1]}"})


def test_a_reused_id_is_a_label_not_a_key(gateway: dict[str, Any]) -> None:
    first = chat(gateway, "alice", client_id="order-42")
    again = chat(gateway, "alice", client_id="order-42", stream=True)
    theirs = chat(gateway, "bob", client_id="order-42")
    ids = [own_id(r) for r in (first, again, theirs)]
    assert len(set(ids)) == 3 and all(i.startswith("req_") for i in ids)
    for r in (first, again, theirs):
        assert r.headers["x-request-id"] == "order-42"
    assert first.json()["id"] == "chatcmpl-" + ids[0].removeprefix("req_")
    assert f'"id":"chatcmpl-{ids[1].removeprefix("req_")}"' in again.text

    for who, mine in (("alice", ids[:2]), ("bob", ids[2:])):
        account, entries, violations = books(gateway["dsn"], gateway[who][0])
        debits = [e.entry for e in entries if e.entry.kind == "debit"]
        assert sorted(d.request_id or "" for d in debits) == sorted(mine)
        assert account.reserved_micros == 0
    assert violations == []

    for own in ids:  # both ids are in the trace
        t = admin_trace(gateway["url"], own)
        assert (t["id"], t["client_request_id"]) == (own, "order-42")
    newest_of_alice = trace_as(gateway, "alice", "order-42").json()
    assert newest_of_alice["id"] == ids[1]
    assert trace_as(gateway, "bob", "order-42").json()["id"] == ids[2]
    assert trace_as(gateway, "alice", ids[0]).json()["id"] == ids[0]
    assert trace_as(gateway, "bob", ids[0]).status_code == 404  # another account's trace


def test_without_a_client_id_both_headers_carry_tollways(gateway: dict[str, Any]) -> None:
    r = chat(gateway, "alice")
    assert r.headers["x-request-id"] == own_id(r)
    assert admin_trace(gateway["url"], own_id(r))["client_request_id"] is None


def test_errors_carry_both_ids_too(gateway: dict[str, Any]) -> None:
    r = httpx.post(gateway["url"] + CHAT, content=b"{", headers={
        "Authorization": f"Bearer {gateway['alice'][1]}", "X-Request-Id": "bad-body-1"})
    assert r.status_code == 400
    assert r.headers["x-request-id"] == "bad-body-1"
    assert r.headers["x-tollway-request-id"].startswith("req_")
    r = httpx.get(gateway["url"] + "/v1/account", headers={
        "Authorization": f"Bearer {gateway['alice'][1]}", "X-Request-Id": "acct-1"})
    assert r.headers["x-request-id"] == "acct-1"
    assert r.headers["x-tollway-request-id"].startswith("req_")


_header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                       max_size=140)


@settings(max_examples=examples(15), deadline=None)
@given(client_id=_header_text, who=st.sampled_from(["alice", "bob"]))
def test_any_client_id_is_harmless(gateway: dict[str, Any], client_id: str, who: str) -> None:
    """Whatever id a client sends (any length, any printable text), the request is
    served, tollway's id is unique, and the id is echoed only if it is sane."""
    r = chat(gateway, who, client_id=client_id)
    expected = client_id if len(client_id) <= 128 else own_id(r)
    assert r.headers["x-request-id"] == expected
