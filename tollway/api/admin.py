"""Admin endpoints under ``/admin/``: accounts, keys, credit, ledger, audit.

Mounted with the app's ``admin`` access, which checks ``Authorization: Bearer
<admin key>`` (``admin_key`` or ``TOLLWAY_ADMIN_KEY``) in constant time; each
handler checks ``request["is_admin"]`` again. Handlers are
``async (request) -> (status, body)`` and raise ``GatewayError`` subclasses.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from tollway.api.account import ledger_page
from tollway.auth import KeyAuthenticator, key_json, parse_expiry
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import account_json, create_account, credit, entry_json, require_account
from tollway.errors import InvalidRequest, NotFound, PermissionDenied
from tollway.storage.base import Conflict

__all__ = ["ADMIN_ROUTES", "AdminAPI"]

Reply = tuple[int, dict[str, Any]]

# (method, path pattern, AdminAPI method name); mount each with the app's "admin" access.
ADMIN_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/admin/accounts", "list_accounts"),
    ("POST", "/admin/accounts", "create_account"),
    ("GET", "/admin/accounts/{account}", "get_account"),
    ("GET", "/admin/accounts/{account}/keys", "list_keys"),
    ("POST", "/admin/accounts/{account}/keys", "create_key"),
    ("POST", "/admin/keys/{key}/revoke", "revoke_key"),
    ("POST", "/admin/accounts/{account}/credit", "credit"),
    ("GET", "/admin/accounts/{account}/ledger", "ledger"),
    ("GET", "/admin/audit", "audit"),
]


def _body(request: dict[str, Any]) -> dict[str, Any]:
    if not request.get("is_admin"):
        raise PermissionDenied("A valid admin key is required.")
    body = request.get("json")
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _decimal(value: Any, param: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise InvalidRequest(f"{param} must be a decimal number", param=param) from None


class AdminAPI:
    """The admin operations over one store and key authenticator."""

    def __init__(self, store: Any, keys: KeyAuthenticator, config: BillingConfig) -> None:
        self._store = store
        self._keys = keys
        self._config = config

    async def list_accounts(self, request: dict[str, Any]) -> Reply:
        _body(request)
        accounts = await self._store.list_accounts()
        return 200, {"object": "list", "data": [account_json(a) for a in accounts]}

    async def create_account(self, request: dict[str, Any]) -> Reply:
        body = _body(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("name is required", param="name")
        try:
            account = await create_account(
                self._store, name,
                credit_usd=_decimal(body.get("credit_usd"), "credit_usd"),
                platform_fee_fraction=_decimal(
                    body.get("platform_fee_fraction"), "platform_fee_fraction"
                ),
                fixed_fee_usd=_decimal(body.get("fixed_fee_usd"), "fixed_fee_usd"),
            )  # fmt: skip
        except Conflict as exc:
            raise InvalidRequest(
                str(exc), param="name", code="account_exists", status=409
            ) from None
        return 201, account_json(account)

    async def get_account(self, request: dict[str, Any]) -> Reply:
        _body(request)
        return 200, account_json(
            await require_account(self._store, request["path_params"]["account"])
        )

    async def list_keys(self, request: dict[str, Any]) -> Reply:
        _body(request)
        account = await require_account(self._store, request["path_params"]["account"])
        keys = await self._store.list_keys(account.id)
        return 200, {"object": "list", "data": [key_json(k) for k in keys]}

    async def create_key(self, request: dict[str, Any]) -> Reply:
        body = _body(request)
        account = await require_account(self._store, request["path_params"]["account"])
        expires = body.get("expires_at", body.get("expires"))
        new = await self._keys.create_key(
            account.id,
            name=body.get("name"),
            expires_at=parse_expiry(expires) if expires is not None else None,
        )
        return 201, key_json(new.key, new.secret)

    async def revoke_key(self, request: dict[str, Any]) -> Reply:
        _body(request)
        key = await self._keys.revoke(request["path_params"]["key"])
        if key is None:
            raise NotFound(f"no key {request['path_params']['key']!r}")
        return 200, key_json(key)

    async def credit(self, request: dict[str, Any]) -> Reply:
        body = _body(request)
        account = await require_account(self._store, request["path_params"]["account"])
        amount = _decimal(body.get("amount_usd"), "amount_usd")
        if amount is None:
            raise InvalidRequest("amount_usd is required", param="amount_usd")
        kind: Literal["credit", "adjustment"] = (
            "adjustment" if amount < 0 or body.get("kind") == "adjustment" else "credit"
        )
        entry = await credit(self._store, account.id, amount, note=body.get("note"), kind=kind)
        after = await require_account(self._store, account.id)
        return 201, {"entry": entry_json(entry), "account": account_json(after)}

    async def ledger(self, request: dict[str, Any]) -> Reply:
        _body(request)
        account = await require_account(self._store, request["path_params"]["account"])
        return 200, await ledger_page(self._store, account.id, request.get("query") or {})

    async def audit(self, request: dict[str, Any]) -> Reply:
        _body(request)
        violations = await audit(self._store, self._config)
        return 200, {"ok": not violations, "violations": [v.as_dict() for v in violations]}
