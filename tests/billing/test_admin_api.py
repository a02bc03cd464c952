"""Admin and caller handlers called as the app calls them (request dicts)."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.auth import KeyAuthenticator
from tollway.billing.account_api import AccountAPI
from tollway.billing.admin_api import ADMIN_ROUTES, AdminAPI
from tollway.billing.config import BillingConfig
from tollway.errors import InvalidRequest, NotFound, PermissionDenied
from tollway.storage import open_storage


def req(method: str, path: str, body: Any = None, admin: bool = True, **kw: Any) -> dict[str, Any]:
    return {"method": method, "path": path, "query": kw.pop("query", {}), "headers": {},
            "json": body, "auth": kw.pop("auth", None), "is_admin": admin,
            "path_params": kw}  # fmt: skip


async def test_admin_operations(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        keys = KeyAuthenticator(store)
        admin = AdminAPI(store, keys, BillingConfig())
        assert {name for _, _, name in ADMIN_ROUTES} <= set(dir(admin))
        with pytest.raises(PermissionDenied):
            await admin.list_accounts(req("GET", "/admin/accounts", admin=False))
        status, acct = await admin.create_account(
            req("POST", "/admin/accounts", {"name": "acme", "credit_usd": "3"})
        )
        assert status == 201 and acct["balance_usd"] == "3.000000"
        with pytest.raises(InvalidRequest) as dup:
            await admin.create_account(req("POST", "/admin/accounts", {"name": "acme"}))
        assert dup.value.status == 409
        status, key = await admin.create_key(
            req("POST", "", {"name": "ci", "expires": "1d"}, account=acct["id"])
        )
        assert status == 201 and key["key"].startswith("tw-")
        caller = await keys.authenticate("Bearer " + key["key"])
        status, credited = await admin.credit(req("POST", "", {"amount_usd": 1.1, "note": "n"},
                                                  account="acme"))  # fmt: skip
        assert credited["account"]["balance_usd"] == "4.100000"
        for _ in range(3):
            await admin.credit(req("POST", "", {"amount_usd": "0.01"}, account="acme"))
        account_api = AccountAPI(store)
        _, me = await account_api.get_account(req("GET", "/v1/account", auth=caller))
        assert (me["balance_usd"], me["reserved_usd"], me["available_usd"]) == (
            "4.130000", "0.000000", "4.130000",
        )  # fmt: skip
        _, page1 = await account_api.get_ledger(req("GET", "", auth=caller, query={"limit": "2"}))
        assert page1["has_more"] and len(page1["data"]) == 2
        _, page2 = await account_api.get_ledger(
            req("GET", "", auth=caller, query={"limit": "10", "after": str(page1["last_id"])})
        )
        assert not page2["has_more"] and len(page2["data"]) == 3
        _, admin_page = await admin.ledger(req("GET", "", account=acct["id"]))
        assert len(admin_page["data"]) == 5
        _, listed = await admin.list_keys(req("GET", "", account="acme"))
        assert "key" not in listed["data"][0]
        _, revoked = await admin.revoke_key(req("POST", "", key=key["id"]))
        assert revoked["revoked_at"] is not None
        with pytest.raises(NotFound):
            await admin.revoke_key(req("POST", "", key="key_nope"))
        _, report = await admin.audit(req("GET", "/admin/audit"))
        assert report == {"ok": True, "violations": []}
    finally:
        await store.close()
