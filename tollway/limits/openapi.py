"""What the limits admin endpoints take and return, for ``GET /openapi.json`` (``Route.doc``)."""

from __future__ import annotations

from typing import Any

from tollway.plugins.docs import STR, Operation, obj, query, ref

__all__ = ["OPERATIONS"]

_COUNT = {"type": ["integer", "null"], "minimum": 1, "maximum": 10**12}
_SCHEMAS: dict[str, Any] = {
    "Limits": obj(["object", "scope", "id", "stored", "effective"], {
        "object": {"const": "limits"}, "scope": {"enum": ["key", "account"]}, "id": STR,
        "stored": {"type": "object"}, "effective": {"type": "object"}}),
    "LimitsBody": obj([], {
        "rpm": _COUNT, "tpm": _COUNT, "max_concurrent": _COUNT,
        "models": {"type": ["array", "null"], "items": STR, "maxItems": 1000,
                   "description": "glob patterns of the model aliases allowed"},
        "spend_cap_usd": {"anyOf": [
            {"type": "number", "minimum": 0, "maximum": 1e9},
            {"type": "string", "maxLength": 64,
             "pattern": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"},
            {"type": "null"}], "description": "USD per spend_period, 0 to 1e9"},
        "spend_period": {"enum": ["daily", "weekly", "monthly", "total", None]},
        "per_model": {"type": ["object", "null"], "additionalProperties": obj([], {
            "rpm": _COUNT, "tpm": _COUNT, "max_concurrent": _COUNT}, extra=False)},
    }, extra=False),
}  # fmt: skip
_REPLACE = [query("replace", {"enum": ["true", "false"]}, "replace instead of merge")]


def _op(summary: str, ok: dict[int, Any], **more: Any) -> Operation:
    return Operation(summary, "admin", ok, errors=(404,), schemas=_SCHEMAS, **more)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/admin/keys/{key}/limits"): _op(
        "A key's limits: stored, and effective (config merged under them)",
        {200: ref("Limits")}),
    ("POST", "/admin/keys/{key}/limits"): _op(
        "Set a key's limits (null removes a field; ?replace=true replaces all)",
        {200: ref("Limits")}, body="LimitsBody", query=_REPLACE),
    ("GET", "/admin/accounts/{account}/limits"): _op(
        "An account's limits: stored, and effective", {200: ref("Limits")}),
    ("POST", "/admin/accounts/{account}/limits"): _op(
        "Set an account's limits (null removes a field; ?replace=true replaces all)",
        {200: ref("Limits")}, body="LimitsBody", query=_REPLACE),
}  # fmt: skip
