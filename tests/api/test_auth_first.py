"""Authentication comes before the body: an unknown caller learns nothing about its body
and costs no body read or validation (issue 11, item 12)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.books import ADMIN, PRICES, new_account, raw_request
from tests.support.servers import run_tollway

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, a valid key) of a tollway with billing (so keys) on SQLite."""
    dsn = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'tollway.db'}"
    _, key = new_account(dsn, "acme")
    config = {
        "database": dsn, "admin_key": ADMIN, "billing": {"enabled": True},
        "providers": {"sim": {"type": "simulated"}},
        "models": {"echo": {"deployments": [{"provider": "sim", "model": "echo",
                                             "prices": PRICES}]}},
    }
    with run_tollway(config) as url:
        yield url, key


BAD_BODIES = [
    pytest.param(b"{not json", id="invalid-json"),
    pytest.param(b'{"model": "echo", "messages": 5}', id="invalid-field"),
    pytest.param(b'{"model": "no-such-model", "messages": []}', id="unknown-model"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("authorization", [None, "Bearer tw-not-a-key", "Basic eA=="])
def test_chat_refuses_an_unknown_caller_before_judging_the_body(
    gateway: tuple[str, str], body: bytes, authorization: str | None
) -> None:
    url, _ = gateway
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    r = httpx.post(url + CHAT, content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("method", "path", "authorization"),
    [("GET", "/v1/account", "Bearer tw-not-a-key"),
     ("GET", "/v1/ledger", None),
     ("POST", "/admin/accounts", "Bearer not-the-admin-key"),
     ("POST", "/admin/accounts", None)],
)
def test_json_routes_refuse_an_unknown_caller_before_judging_the_body(
    gateway: tuple[str, str], method: str, path: str, authorization: str | None
) -> None:
    url, _ = gateway
    headers = {"Authorization": authorization} if authorization else {}
    r = httpx.request(method, url + path, content=b"{not json", headers=headers)
    assert r.status_code == 401, r.text


def test_a_known_caller_still_gets_the_validation_error(gateway: tuple[str, str]) -> None:
    url, key = gateway
    r = httpx.post(url + CHAT, content=b'{"model": "echo", "messages": 5}',
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("messages")


@pytest.mark.parametrize("path", [CHAT, "/admin/accounts"])
def test_no_body_is_read_for_an_unknown_caller(gateway: tuple[str, str], path: str) -> None:
    """The refusal comes at once, while the declared body has not even been sent."""
    url, _ = gateway
    sock = raw_request(url, f"POST {path} HTTP/1.1\nHost: x\nAuthorization: Bearer wrong\n"
                            "Content-Type: application/json\nContent-Length: 1000000\n")
    started = time.monotonic()
    sock.settimeout(5)
    try:
        head = sock.recv(4096)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 401 "), head[:100]
    assert time.monotonic() - started < 3


def test_the_connection_stays_usable_after_a_refusal(gateway: tuple[str, str]) -> None:
    url, key = gateway
    with httpx.Client(base_url=url) as client:
        r = client.post(CHAT, content=b"x" * 200_000, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = client.post(CHAT, headers={"Authorization": f"Bearer {key}"},
                        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text

