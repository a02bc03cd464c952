"""Real accounts, keys, ledgers and traces for end-to-end tests (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx

from tollway.auth import KeyAuthenticator
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.storage import open_storage
from tollway.storage.base import Account, LedgerEntry

__all__ = ["ADMIN", "PRICES", "Books", "admin_trace", "books", "new_account", "raw_request"]

ADMIN = "admin-key-for-tests-0123456789"
PRICES = {"input_per_mtok": 100, "cached_input_per_mtok": 50, "output_per_mtok": 400}


def new_account(dsn: str, name: str, credit: str = "10.00") -> tuple[str, str]:
    """(account id, API key) of a new account holding ``credit`` USD."""

    async def go() -> tuple[str, str]:
        store = await open_storage(dsn)
        try:
            account = await create_account(store, name, credit_usd=credit)
            new = await KeyAuthenticator(store).create_key(account.id)
        finally:
            await store.close()
        return account.id, new.secret

    return asyncio.run(go())


Books = tuple[Account, list[LedgerEntry], list[Any]]


def books(dsn: str, account_id: str) -> Books:
    """(account, its ledger entries newest first, every audit violation)."""

    async def go() -> Books:
        store = await open_storage(dsn)
        try:
            account = await store.get_account(account_id)
            assert account is not None
            return account, await store.entries(account_id), await audit(store, BillingConfig())
        finally:
            await store.close()

    return asyncio.run(go())


def admin_trace(url: str, request_id: str, within: float = 5.0) -> dict[str, Any]:
    """Poll ``GET /admin/traces/{id}`` until the trace is written."""
    deadline = time.monotonic() + within
    while True:
        r = httpx.get(f"{url}/admin/traces/{request_id}",
                      headers={"Authorization": f"Bearer {ADMIN}"})
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no trace {request_id}: {r.status_code} {r.text}"
        time.sleep(0.05)


def raw_request(url: str, head: str, body: bytes = b"") -> socket.socket:
    """Open a socket to ``url`` and send ``head`` (request line and headers) and ``body``."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return sock
