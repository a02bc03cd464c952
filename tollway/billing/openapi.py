"""What billing's endpoints take and return, for ``GET /openapi.json`` (``Route.doc``)."""

from __future__ import annotations

from typing import Any

from tollway.billing.admin_bodies import ADMIN_BODIES
from tollway.bounds import INT64_MAX
from tollway.plugins.docs import INT, LIMIT, NSTR, STR, USD, Operation, obj, query, ref

__all__ = ["OPERATIONS"]

_SCHEMAS: dict[str, Any] = {
    "Account": obj(["id", "object", "name", "balance_usd", "reserved_usd", "available_usd"], {
        "id": STR, "object": {"const": "account"}, "name": STR, "created_at": INT,
        "balance_usd": USD, "reserved_usd": USD, "available_usd": USD,
        "platform_fee_fraction": NSTR, "fixed_fee_usd": {"type": ["string", "null"]},
        "disabled": {"type": "boolean"},
    }),
    "AccountList": obj(["object", "data"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("Account")}}),
    "LedgerEntry": obj(["id", "object", "account_id", "kind", "amount_usd"], {
        "id": INT, "object": {"const": "ledger.entry"}, "created_at": {"type": "number"},
        "account_id": STR, "kind": STR, "amount_usd": USD, "note": NSTR,
    }),
    "LedgerPage": obj(["object", "data", "has_more"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("LedgerEntry")},
        "first_id": {"type": ["integer", "null"]}, "last_id": {"type": ["integer", "null"]},
        "has_more": {"type": "boolean"},
    }),
    "ApiKey": obj(["id", "object", "account_id", "prefix"], {
        "id": STR, "object": {"const": "api_key"}, "account_id": STR, "prefix": STR,
        "name": NSTR, "created_at": {"type": "number"},
        "expires_at": {"type": ["number", "null"]}, "revoked_at": {"type": ["number", "null"]},
        "key": {"type": "string", "description": "the secret; only in the creation response"},
    }),
    "ApiKeyList": obj(["object", "data"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("ApiKey")}}),
    "CreditResult": obj(["entry", "account"], {
        "entry": ref("LedgerEntry"), "account": ref("Account")}),
    "Audit": obj(["ok", "violations"], {
        "ok": {"type": "boolean"},
        "violations": {"type": "array", "items": obj(["code", "subject", "message"], {
            "code": STR, "subject": STR, "message": STR})},
    }),
}  # fmt: skip

_LEDGER_QUERY = [
    LIMIT,
    query("after", {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
          "the last entry id of the previous page (entries older than it)"),
]  # fmt: skip
_ADMIN_404 = (404,)


def _op(summary: str, tag: str, ok: dict[int, Any], **more: Any) -> Operation:
    return Operation(summary, tag, ok, schemas=_SCHEMAS, models=tuple(ADMIN_BODIES.values()),
                     **more)  # fmt: skip


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/account"): _op(
        "The caller's account: balance, reserved, available", "billing", {200: ref("Account")}),
    ("GET", "/v1/ledger"): _op(
        "The caller's ledger, newest first", "billing", {200: ref("LedgerPage")},
        query=_LEDGER_QUERY),
    ("GET", "/admin/accounts"): _op("List accounts", "admin", {200: ref("AccountList")}),
    ("POST", "/admin/accounts"): _op(
        "Create an account (optionally with credit and fee overrides)", "admin",
        {201: ref("Account")}, errors=(409,), body="CreateAccountBody", body_required=True),
    ("GET", "/admin/accounts/{account}"): _op(
        "One account (by id or name)", "admin", {200: ref("Account")}, errors=_ADMIN_404),
    ("GET", "/admin/accounts/{account}/keys"): _op(
        "An account's keys (prefixes only)", "admin", {200: ref("ApiKeyList")},
        errors=_ADMIN_404),
    ("POST", "/admin/accounts/{account}/keys"): _op(
        "Create a key (its secret is shown once)", "admin", {201: ref("ApiKey")},
        errors=_ADMIN_404, body="CreateKeyBody"),
    ("POST", "/admin/keys/{key}/revoke"): _op(
        "Revoke a key", "admin", {200: ref("ApiKey")}, errors=_ADMIN_404),
    ("POST", "/admin/accounts/{account}/credit"): _op(
        "Add credit (or, negative, an adjustment)", "admin", {201: ref("CreditResult")},
        errors=_ADMIN_404, body="CreditBody", body_required=True),
    ("GET", "/admin/accounts/{account}/ledger"): _op(
        "An account's ledger, newest first", "admin", {200: ref("LedgerPage")},
        errors=_ADMIN_404, query=_LEDGER_QUERY),
    ("GET", "/admin/audit"): _op("Check the ledger invariants", "admin", {200: ref("Audit")}),
}  # fmt: skip
