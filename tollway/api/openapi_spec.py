"""What each endpoint takes and returns, for the OpenAPI document (``api/openapi.py``).

Request bodies come from the models that validate them (``wire/openai.py``,
``api/admin_bodies.py``); this module adds what the code does not declare as
models: query and path parameters, response shapes and the statuses each
endpoint can answer. ``OPERATIONS`` is keyed by ``(method, path pattern)`` exactly
as the routes are mounted; a test keeps it and the mounted routes equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollway.api.traces import STATUS_PATTERN
from tollway.bounds import INT64_MAX

__all__ = ["OPERATIONS", "SCHEMAS", "Operation"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], properties: dict[str, Any], extra: bool = True) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties,
            "additionalProperties": extra}  # fmt: skip


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_USD = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$", "description": "USD, six decimals"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], {"error": _obj(["message", "type", "param", "code"], {
        "message": _STR, "type": _STR, "param": _NSTR,
        "code": {"type": ["string", "integer", "null"]},
    }, extra=False)}, extra=False),
    "Health": _obj(["status"], {"status": {"const": "ok"}}),
    "Model": _obj(["id", "object", "created", "owned_by"], {
        "id": _STR, "object": {"const": "model"}, "created": _INT, "owned_by": _STR}),
    "ModelList": _obj(["object", "data"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}}),
    "ChatCompletion": _obj(["id", "object", "created", "model", "choices"], {
        "id": _STR, "object": {"const": "chat.completion"}, "created": _INT, "model": _STR,
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    }),
    "ChatCompletionChunk": _obj(["id", "object", "created", "model", "choices"], {
        "id": _STR, "object": {"const": "chat.completion.chunk"}, "created": _INT,
        "model": _STR, "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    }),
    "ChatCompletionEvent": _obj(["data"], {
        "event": {"const": "message"},
        "data": {"anyOf": [
            {"const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"anyOf": [ref("ChatCompletionChunk"), ref("Error")]}},
        ]},
    }, extra=False),
    "Account": _obj(["id", "object", "name", "balance_usd", "reserved_usd", "available_usd"], {
        "id": _STR, "object": {"const": "account"}, "name": _STR, "created_at": _INT,
        "balance_usd": _USD, "reserved_usd": _USD, "available_usd": _USD,
        "platform_fee_fraction": _NSTR, "fixed_fee_usd": {"type": ["string", "null"]},
        "disabled": {"type": "boolean"},
    }),
    "AccountList": _obj(["object", "data"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("Account")}}),
    "LedgerEntry": _obj(["id", "object", "account_id", "kind", "amount_usd"], {
        "id": _INT, "object": {"const": "ledger.entry"}, "created_at": {"type": "number"},
        "account_id": _STR, "kind": _STR, "amount_usd": _USD, "note": _NSTR,
    }),
    "LedgerPage": _obj(["object", "data", "has_more"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("LedgerEntry")},
        "first_id": {"type": ["integer", "null"]}, "last_id": {"type": ["integer", "null"]},
        "has_more": {"type": "boolean"},
    }),
    "ApiKey": _obj(["id", "object", "account_id", "prefix"], {
        "id": _STR, "object": {"const": "api_key"}, "account_id": _STR, "prefix": _STR,
        "name": _NSTR, "created_at": {"type": "number"},
        "expires_at": {"type": ["number", "null"]}, "revoked_at": {"type": ["number", "null"]},
        "key": {"type": "string", "description": "the secret; only in the creation response"},
    }),
    "ApiKeyList": _obj(["object", "data"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("ApiKey")}}),
    "CreditResult": _obj(["entry", "account"], {
        "entry": ref("LedgerEntry"), "account": ref("Account")}),
    "Audit": _obj(["ok", "violations"], {
        "ok": {"type": "boolean"},
        "violations": {"type": "array", "items": _obj(["code", "subject", "message"], {
            "code": _STR, "subject": _STR, "message": _STR})},
    }),
    "Limits": _obj(["object", "scope", "id", "stored", "effective"], {
        "object": {"const": "limits"}, "scope": {"enum": ["key", "account"]}, "id": _STR,
        "stored": {"type": "object"}, "effective": {"type": "object"}}),
    "LimitsBody": _obj([], {
        "rpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
        "tpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
        "max_concurrent": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
        "models": {"type": ["array", "null"], "items": _STR, "maxItems": 1000,
                   "description": "glob patterns of the model aliases allowed"},
        "spend_cap_usd": {"anyOf": [
            {"type": "number", "minimum": 0, "maximum": 1e9},
            {"type": "string", "maxLength": 64,
             "pattern": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"},
            {"type": "null"}], "description": "USD per spend_period, 0 to 1e9"},
        "spend_period": {"enum": ["daily", "weekly", "monthly", "total", None]},
        "per_model": {"type": ["object", "null"], "additionalProperties": _obj([], {
            "rpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
            "tpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
            "max_concurrent": {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12},
        }, extra=False)},
    }, extra=False),
    "Trace": _obj(["id", "object", "received_at", "status"], {
        "id": _STR, "object": {"const": "trace"}, "received_at": {"type": "number"},
        "status": _INT,
    }),
    "TraceList": _obj(["object", "data", "has_more", "next_cursor"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("Trace")},
        "has_more": {"type": "boolean"}, "next_cursor": _NSTR,
    }),
}  # fmt: skip


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (20)")
_LEDGER_QUERY = [
    _LIMIT,
    _query("after", {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
           "the last entry id of the previous page (entries older than it)"),
]  # fmt: skip
_TRACE_QUERY = [
    _query("model", _STR, "requested model"),
    _query("deployment", _STR, "serving deployment"),
    _query("key_id", _STR, "API key id"),
    _query("status", {"type": "string", "pattern": f"^{STATUS_PATTERN}$"},
           "an HTTP status (200), a class (4xx), ok (< 400) or error (>= 400)"),
    _query("since", _STR, "Unix seconds or ISO 8601"),
    _query("until", _STR, "Unix seconds or ISO 8601"),
    _LIMIT,
    _query("cursor", _STR, "next_cursor of the previous page"),
]  # fmt: skip


@dataclass(frozen=True)
class Operation:
    """One endpoint: summary, tag, parameters, body, success responses, error statuses."""

    summary: str
    tag: str
    ok: dict[int, Any]  # status -> schema (or a content mapping under "content")
    errors: tuple[int, ...] = ()
    query: list[dict[str, Any]] = field(default_factory=list)
    body: str | None = None  # a components schema name


_ADMIN_404 = (404,)
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation("Liveness", "meta", {200: ref("Health")}),
    ("GET", "/openapi.json"): Operation("This document", "meta", {200: {"type": "object"}}),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics", "meta", {200: {"content": {"text/plain": {"schema": _STR}}}}),
    ("POST", "/v1/chat/completions"): Operation(
        "Create a chat completion (OpenAI's request, plus tollway's extensions)", "chat",
        {200: {"content": {"application/json": {"schema": ref("ChatCompletion")},
                           "text/event-stream": {"schema": ref("ChatCompletionEvent")}}}},
        errors=(402, 404, 502, 503, 504), body="ChatCompletionRequest"),
    ("GET", "/v1/models"): Operation("List models", "models", {200: ref("ModelList")}),
    ("GET", "/v1/models/{model}"): Operation(
        "Retrieve a model", "models", {200: ref("Model")}, errors=(404,)),
    ("GET", "/v1/account"): Operation(
        "The caller's account: balance, reserved, available", "billing", {200: ref("Account")}),
    ("GET", "/v1/ledger"): Operation(
        "The caller's ledger, newest first", "billing", {200: ref("LedgerPage")},
        query=_LEDGER_QUERY),
    ("GET", "/v1/traces"): Operation(
        "The caller's traces, newest first", "traces", {200: ref("TraceList")},
        errors=(503,), query=_TRACE_QUERY),
    ("GET", "/v1/traces/{request_id}"): Operation(
        "One of the caller's traces", "traces", {200: ref("Trace")}, errors=(404, 503)),
    ("GET", "/admin/traces"): Operation(
        "Every account's traces", "admin", {200: ref("TraceList")}, errors=(503,),
        query=[*_TRACE_QUERY, _query("account_id", _STR, "one account only")]),
    ("GET", "/admin/traces/{request_id}"): Operation(
        "Any account's trace", "admin", {200: ref("Trace")}, errors=(404, 503)),
    ("GET", "/admin/accounts"): Operation("List accounts", "admin", {200: ref("AccountList")}),
    ("POST", "/admin/accounts"): Operation(
        "Create an account (optionally with credit and fee overrides)", "admin",
        {201: ref("Account")}, errors=(409,), body="CreateAccountBody"),
    ("GET", "/admin/accounts/{account}"): Operation(
        "One account (by id or name)", "admin", {200: ref("Account")}, errors=_ADMIN_404),
    ("GET", "/admin/accounts/{account}/keys"): Operation(
        "An account's keys (prefixes only)", "admin", {200: ref("ApiKeyList")},
        errors=_ADMIN_404),
    ("POST", "/admin/accounts/{account}/keys"): Operation(
        "Create a key (its secret is shown once)", "admin", {201: ref("ApiKey")},
        errors=_ADMIN_404, body="CreateKeyBody"),
    ("POST", "/admin/keys/{key}/revoke"): Operation(
        "Revoke a key", "admin", {200: ref("ApiKey")}, errors=_ADMIN_404),
    ("POST", "/admin/accounts/{account}/credit"): Operation(
        "Add credit (or, negative, an adjustment)", "admin", {201: ref("CreditResult")},
        errors=_ADMIN_404, body="CreditBody"),
    ("GET", "/admin/accounts/{account}/ledger"): Operation(
        "An account's ledger, newest first", "admin", {200: ref("LedgerPage")},
        errors=_ADMIN_404, query=_LEDGER_QUERY),
    ("GET", "/admin/audit"): Operation("Check the ledger invariants", "admin", {200: ref("Audit")}),
    ("GET", "/admin/keys/{key}/limits"): Operation(
        "A key's limits: stored, and effective (config merged under them)", "admin",
        {200: ref("Limits")}, errors=_ADMIN_404),
    ("POST", "/admin/keys/{key}/limits"): Operation(
        "Set a key's limits (null removes a field; ?replace=true replaces all)", "admin",
        {200: ref("Limits")}, errors=_ADMIN_404, body="LimitsBody",
        query=[_query("replace", {"enum": ["true", "false"]}, "replace instead of merge")]),
    ("GET", "/admin/accounts/{account}/limits"): Operation(
        "An account's limits: stored, and effective", "admin", {200: ref("Limits")},
        errors=_ADMIN_404),
    ("POST", "/admin/accounts/{account}/limits"): Operation(
        "Set an account's limits (null removes a field; ?replace=true replaces all)", "admin",
        {200: ref("Limits")}, errors=_ADMIN_404, body="LimitsBody",
        query=[_query("replace", {"enum": ["true", "false"]}, "replace instead of merge")]),
}  # fmt: skip
