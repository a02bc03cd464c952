"""Bad input on the admin and caller APIs: a 400 naming the field, never a 5xx, nothing written.

Through the real gateway (uvicorn on 127.0.0.1) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import run_tollway
from tollway.storage import open_storage

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture()
def gateway(dsn: str) -> Iterator[httpx.Client]:
    config = {
        "database": dsn,
        "admin_key": "admin-secret",
        "billing": {"enabled": True},
        "providers": {"sim": {"type": "simulated"}},
        "models": {"echo": {"deployments": [{"provider": "sim", "model": "echo",
                                             "prices": "free"}]}},
    }
    with run_tollway(config) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def _bad(response: httpx.Response, param: str | None) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


def _state(client: httpx.Client) -> Any:
    accounts = client.get("/admin/accounts", headers=ADMIN).json()["data"]
    ledgers = [
        client.get(f"/admin/accounts/{a['id']}/ledger?limit=100", headers=ADMIN).json()["data"]
        for a in accounts
    ]
    keys = [client.get(f"/admin/accounts/{a['id']}/keys", headers=ADMIN).json() for a in accounts]
    return accounts, ledgers, keys


def test_admin_bodies_refuse_bad_values_and_write_nothing(gateway: httpx.Client) -> None:
    c = gateway
    acct = c.post("/admin/accounts", json={"name": "a", "credit_usd": "10"}, headers=ADMIN).json()
    credit = f"/admin/accounts/{acct['id']}/credit"
    keys = f"/admin/accounts/{acct['id']}/keys"
    before = _state(c)
    for amount in ["1e308", 1e308, "NaN", "-Infinity", "abc", {}, [], True, None, "1e-9",
                   2**64 - 1, "-1e20", "1" * 70, "9223372036854.775807"]:  # fmt: skip
        _bad(c.post(credit, json={"amount_usd": amount}, headers=ADMIN), "amount_usd")
    for note in [{"a": 1}, "", "x\x00y", "n" * 1001, 5]:
        _bad(c.post(credit, json={"amount_usd": "1", "note": note}, headers=ADMIN), "note")
    _bad(c.post(credit, json={"amount_usd": "1", "kind": "refund"}, headers=ADMIN), "kind")
    _bad(c.post(credit, json={"amount_usd": "1", "extra": 1}, headers=ADMIN), "extra")
    _bad(c.post(credit, json=[1], headers=ADMIN), None)
    for expires in ["999999999999d", [], 1e300, {"a": 1}, 10**30, "9999-12-31", "yesterday",
                    "2001-01-01", True, "9" * 5000 + "d", "0001-01-01T00:00:00+14:00"]:  # fmt: skip
        _bad(c.post(keys, json={"expires": expires}, headers=ADMIN), "expires")
    _bad(c.post(keys, json={"name": {"x": 1}}, headers=ADMIN), "name")
    for body, param in [
        ({"name": {"x": 1}}, "name"),
        ({}, "name"),
        ({"name": "b", "platform_fee_fraction": "-1"}, "platform_fee_fraction"),
        ({"name": "b", "platform_fee_fraction": "NaN"}, "platform_fee_fraction"),
        ({"name": "b", "platform_fee_fraction": 11}, "platform_fee_fraction"),
        ({"name": "b", "fixed_fee_usd": "-5"}, "fixed_fee_usd"),
        ({"name": "b", "fixed_fee_usd": "1e300"}, "fixed_fee_usd"),
        ({"name": "b", "credit_usd": "NaN"}, "credit_usd"),
        ({"name": "b", "credit_usd": "-1"}, "credit_usd"),
        ({"name": "b", "credit_usd": "2e9"}, "credit_usd"),
    ]:
        _bad(c.post("/admin/accounts", json=body, headers=ADMIN), param)
    assert _state(c) == before  # nothing half-written
    assert c.get("/admin/audit", headers=ADMIN).json() == {"ok": True, "violations": []}


def test_balances_stay_in_range(gateway: httpx.Client) -> None:
    c = gateway
    acct = c.post("/admin/accounts", json={"name": "a"}, headers=ADMIN).json()
    credit = f"/admin/accounts/{acct['id']}/credit"
    assert c.post(credit, json={"amount_usd": "999999999"}, headers=ADMIN).status_code == 201
    over = c.post(credit, json={"amount_usd": "1.000001"}, headers=ADMIN)
    _bad(over, "amount_usd")
    assert over.json()["error"]["code"] == "balance_out_of_range"
    top = c.post(credit, json={"amount_usd": 1}, headers=ADMIN).json()
    assert top["account"]["balance_usd"] == "1000000000.000000"  # exactly the bound
    _bad(c.post(credit, json={"amount_usd": "-1000000000.000001"}, headers=ADMIN), "amount_usd")
    below = c.post(credit, json={"amount_usd": "-1000000000", "kind": "adjustment"},
                   headers=ADMIN)  # fmt: skip
    assert below.status_code == 201 and below.json()["account"]["balance_usd"] == "0.000000"
    negative = c.post(credit, json={"amount_usd": "-0.000001"}, headers=ADMIN)
    _bad(negative, "amount_usd")  # the available balance may not go below zero
    assert c.get("/admin/audit", headers=ADMIN).json() == {"ok": True, "violations": []}


def test_far_future_expiry_is_refused_and_listing_works(gateway: httpx.Client) -> None:
    c = gateway
    acct = c.post("/admin/accounts", json={"name": "a"}, headers=ADMIN).json()
    keys = f"/admin/accounts/{acct['id']}/keys"
    for expires in ["36000d", "2030-01-01T00:00:00Z", 4102444800]:
        assert c.post(keys, json={"expires": expires}, headers=ADMIN).status_code == 201
    assert c.post(keys, json={"expires_at": "99y"}, headers=ADMIN).status_code == 400
    listed = c.get(keys, headers=ADMIN)
    assert listed.status_code == 200 and len(listed.json()["data"]) == 3


def test_keys_stored_with_any_expiry_still_list(gateway: httpx.Client, dsn: str) -> None:
    """A key another writer stored with an absurd expiry does not break listing."""
    c = gateway
    acct = c.post("/admin/accounts", json={"name": "a"}, headers=ADMIN).json()
    keys = f"/admin/accounts/{acct['id']}/keys"
    assert c.post(keys, json={"expires": "30d"}, headers=ADMIN).status_code == 201

    async def tamper() -> None:
        store = await open_storage(dsn)
        try:
            await store.db.execute("UPDATE api_keys SET expires_at = ?", 1e300)
        finally:
            await store.close()

    asyncio.run(tamper())
    listed = c.get(keys, headers=ADMIN)
    assert listed.status_code == 200 and listed.json()["data"][0]["expires_at"] == 1e300


def test_a_query_parameter_given_twice_is_refused(gateway: httpx.Client) -> None:
    """None of the documented query parameters takes several values: the last one must
    not silently win over invalid ones before it (a fuzz found ``?replace=&replace=true``
    accepted)."""
    c = gateway
    acct = c.post("/admin/accounts", headers=ADMIN, json={"name": "twice"}).json()
    key = c.post(f"/admin/accounts/{acct['id']}/keys", headers=ADMIN, json={}).json()
    limits = f"/admin/keys/{key['id']}/limits"
    _bad(c.post(f"{limits}?replace=&replace=true", headers=ADMIN, json={}), "replace")
    _bad(c.post(f"{limits}?replace=true&replace=true", headers=ADMIN, json={}), "replace")
    _bad(c.get("/admin/traces?limit=5&limit=5", headers=ADMIN), "limit")
    assert c.post(f"{limits}?replace=true", headers=ADMIN, json={}).status_code == 200


def test_paging_and_path_parameters_out_of_range(gateway: httpx.Client) -> None:
    c = gateway
    acct = c.post("/admin/accounts", json={"name": "a", "credit_usd": 1}, headers=ADMIN).json()
    key = c.post(f"/admin/accounts/{acct['id']}/keys", json={}, headers=ADMIN).json()["key"]
    caller = {"Authorization": f"Bearer {key}"}
    for query, param in [("after=99999999999999999999", "after"), ("after=-5", "after"),
                         ("after=1.5", "after"), ("limit=99999999999999999999", "limit"),
                         ("limit=0", "limit"), ("after=%00", "after"),
                         ("after=", "after")]:  # fmt: skip
        _bad(c.get(f"/v1/ledger?{query}", headers=caller), param)
        _bad(c.get(f"/admin/accounts/{acct['id']}/ledger?{query}", headers=ADMIN), param)
    for seq in ["99999999999999999999", "18446744073709551615", "-1"]:
        cursor = base64.urlsafe_b64encode(f"[1.0, {seq}]".encode()).decode().rstrip("=")
        _bad(c.get(f"/v1/traces?cursor={cursor}", headers=caller), "cursor")
        _bad(c.get(f"/admin/traces?cursor={cursor}", headers=ADMIN), "cursor")
    for query, param in [("limit=99999999999999999999", "limit"), ("since=nan", "since"),
                         ("until=1e999", "until"), ("since=2024-13-01", "since"),
                         ("model=a%00b", "model")]:  # fmt: skip
        _bad(c.get(f"/v1/traces?{query}", headers=caller), param)
        _bad(c.get(f"/admin/traces?{query}", headers=ADMIN), param)
    _bad(c.get("/admin/accounts/a%00b", headers=ADMIN), "account")
    _bad(c.get("/v1/traces/r%00", headers=caller), "request_id")
    assert c.get("/v1/traces?since=1e300&until=-1e300", headers=caller).status_code == 200
    assert c.get("/admin/audit", headers=ADMIN).json() == {"ok": True, "violations": []}
