"""Keys: create, authenticate, revoke (seen by another instance), expire."""

from __future__ import annotations

import logging

import pytest

from tollway.auth import KeyAuthenticator, generate_key, hash_key
from tollway.billing.config import BillingConfig
from tollway.errors import AuthenticationError
from tollway.storage import open_storage


class Clock:
    """A settable clock (the real one, shifted)."""

    def __init__(self) -> None:
        import time

        self.offset = 0.0
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.offset


def test_key_shape() -> None:
    key = generate_key()
    assert key.startswith("tw-") and len(key) == 3 + 43  # 32 bytes base64url
    assert len(hash_key(key)) == 64 and generate_key() != key


async def test_create_authenticate_list(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = await open_storage(dsn)
    try:
        account = await store.create_account("acme")
        auth = KeyAuthenticator(store)
        new = await auth.create_key(account.id, name="ci")
        result = await auth.authenticate(f"Bearer {new.secret}")
        assert (result.account_id, result.key_id, result.account_name) == (
            account.id, new.key.id, "acme",
        )  # fmt: skip
        listed = await store.list_keys(account.id)
        assert [k.prefix for k in listed] == [new.secret[:11]]
        assert new.secret not in repr(listed) and new.secret not in caplog.text
        stored = await store.db.fetch("SELECT * FROM api_keys")
        assert new.secret not in repr(stored)
        for header in (None, "", "Basic abc", "Bearer ", f"Bearer {new.secret}x"):
            with pytest.raises(AuthenticationError) as err:
                await auth.authenticate(header)
            assert err.value.status == 401 and err.value.code == "invalid_api_key"
    finally:
        await store.close()


async def test_revocation_reaches_other_instances(dsn: str) -> None:
    a_store, b_store = await open_storage(dsn), await open_storage(dsn)
    try:
        account = await a_store.create_account("acme")
        a, b = KeyAuthenticator(a_store), KeyAuthenticator(b_store)
        new = await a.create_key(account.id)
        header = f"Bearer {new.secret}"
        await a.authenticate(header)
        await b.authenticate(header)  # now cached on b
        await a.revoke(new.key.id)
        with pytest.raises(AuthenticationError, match="revoked"):
            await a.authenticate(header)
        await b.authenticate(header)  # b still has the cached copy …
        assert await b.refresh() == 1  # … until its periodic refresh runs
        with pytest.raises(AuthenticationError, match="revoked"):
            await b.authenticate(header)
    finally:
        await a_store.close()
        await b_store.close()


async def test_cache_ttl_is_a_backstop(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await store.create_account("acme")
        clock = Clock()
        auth = KeyAuthenticator(store, BillingConfig(key_cache_ttl_seconds=10), clock=clock)
        other = KeyAuthenticator(store)
        new = await auth.create_key(account.id)
        await auth.authenticate(f"Bearer {new.secret}")
        await other.revoke(new.key.id)
        await auth.authenticate(f"Bearer {new.secret}")  # cached
        clock.offset = 11
        with pytest.raises(AuthenticationError, match="revoked"):
            await auth.authenticate(f"Bearer {new.secret}")
    finally:
        await store.close()


async def test_expired_key(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await store.create_account("acme")
        clock = Clock()
        auth = KeyAuthenticator(store, clock=clock)
        new = await auth.create_key(account.id, expires_at=clock() + 60)
        await auth.authenticate(f"Bearer {new.secret}")
        clock.offset = 61
        with pytest.raises(AuthenticationError, match="expired"):
            await auth.authenticate(f"Bearer {new.secret}")
    finally:
        await store.close()
