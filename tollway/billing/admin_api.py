"""Admin endpoints under ``/admin/``: accounts, keys, credit, ledger, audit.

Mounted with the app's ``admin`` access, which checks ``Authorization: Bearer
<admin key>`` (``admin_key`` or ``TOLLWAY_ADMIN_KEY``) in constant time; each
handler checks ``request["is_admin"]`` again. Handlers are
``async (request) -> (status, body)`` and raise ``GatewayError`` subclasses.
"""

from __future__ import annotations

from typing import Any, Literal

from tollway.auth import KeyAuthenticator, key_json, parse_expiry
from tollway.billing.account_api import ledger_page
from tollway.billing.admin_bodies import CreateAccountBody, CreateKeyBody, CreditBody, parse_body
from tollway.billing.admin_routes import ADMIN_ROUTES
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import account_json, create_account, credit, entry_json, require_account
from tollway.errors import InvalidRequest, NotFound, PermissionDenied
from tollway.storage.base import Conflict

__all__ = ["ADMIN_ROUTES", "AdminAPI"]

Reply = tuple[int, dict[str, Any]]


def _admin(request: dict[str, Any]) -> None:
    if not request.get("is_admin"):
        raise PermissionDenied("A valid admin key is required.")


class AdminAPI:
    """The admin operations over one store and key authenticator."""

    def __init__(self, store: Any, keys: KeyAuthenticator, config: BillingConfig) -> None:
        self._store = store
        self._keys = keys
        self._config = config

    async def list_accounts(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        accounts = await self._store.list_accounts()
        return 200, {"object": "list", "data": [account_json(a) for a in accounts]}

    async def create_account(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        body = parse_body(CreateAccountBody, request.get("json"))
        try:
            account = await create_account(
                self._store, body.name, credit_usd=body.credit_usd,
                platform_fee_fraction=body.platform_fee_fraction,
                fixed_fee_usd=body.fixed_fee_usd,
            )  # fmt: skip
        except Conflict as exc:
            raise InvalidRequest(
                str(exc), param="name", code="account_exists", status=409
            ) from None
        return 201, account_json(account)

    async def get_account(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        return 200, account_json(
            await require_account(self._store, request["path_params"]["account"])
        )

    async def list_keys(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        account = await require_account(self._store, request["path_params"]["account"])
        keys = await self._store.list_keys(account.id)
        return 200, {"object": "list", "data": [key_json(k) for k in keys]}

    async def create_key(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        body = parse_body(CreateKeyBody, request.get("json"))
        expires = body.expires_at if body.expires_at is not None else body.expires
        expires_at = parse_expiry(expires) if expires is not None else None
        account = await require_account(self._store, request["path_params"]["account"])
        new = await self._keys.create_key(account.id, name=body.name, expires_at=expires_at)
        return 201, key_json(new.key, new.secret)

    async def revoke_key(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        key = await self._keys.revoke(request["path_params"]["key"])
        if key is None:
            raise NotFound(f"no key {request['path_params']['key']!r}")
        return 200, key_json(key)

    async def credit(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        body = parse_body(CreditBody, request.get("json"))
        account = await require_account(self._store, request["path_params"]["account"])
        amount = body.amount_usd
        kind: Literal["credit", "adjustment"] = (
            "adjustment" if amount < 0 or body.kind == "adjustment" else "credit"
        )
        entry = await credit(self._store, account.id, amount, note=body.note, kind=kind)
        after = await require_account(self._store, account.id)
        return 201, {"entry": entry_json(entry), "account": account_json(after)}

    async def ledger(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        account = await require_account(self._store, request["path_params"]["account"])
        return 200, await ledger_page(self._store, account.id, request.get("query") or {})

    async def audit(self, request: dict[str, Any]) -> Reply:
        _admin(request)
        violations = await audit(self._store, self._config)
        return 200, {"ok": not violations, "violations": [v.as_dict() for v in violations]}
