"""What tracing's endpoints take and return, for ``GET /openapi.json`` (``Route.doc``)."""

from __future__ import annotations

from typing import Any

from tollway.plugins.docs import INT, LIMIT, NSTR, STR, Operation, obj, query, ref
from tollway.tracing.api import STATUS_PATTERN

__all__ = ["OPERATIONS"]

_SCHEMAS: dict[str, Any] = {
    "Trace": obj(["id", "object", "received_at", "status"], {
        "id": STR, "object": {"const": "trace"}, "received_at": {"type": "number"},
        "status": INT,
    }),
    "TraceList": obj(["object", "data", "has_more", "next_cursor"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("Trace")},
        "has_more": {"type": "boolean"}, "next_cursor": NSTR,
    }),
}  # fmt: skip

_TRACE_QUERY = [
    query("model", STR, "requested model"),
    query("deployment", STR, "serving deployment"),
    query("key_id", STR, "API key id"),
    query("status", {"type": "string", "pattern": f"^{STATUS_PATTERN}$"},
          "an HTTP status (200), a class (4xx), ok (< 400) or error (>= 400)"),
    query("since", STR, "Unix seconds or ISO 8601"),
    query("until", STR, "Unix seconds or ISO 8601"),
    LIMIT,
    query("cursor", STR, "next_cursor of the previous page"),
]  # fmt: skip

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/metrics"): Operation(
        "Prometheus metrics", "meta", {200: {"content": {"text/plain": {"schema": STR}}}}),
    ("GET", "/v1/traces"): Operation(
        "The caller's traces, newest first", "traces", {200: ref("TraceList")},
        errors=(503,), query=_TRACE_QUERY, schemas=_SCHEMAS),
    ("GET", "/v1/traces/{request_id}"): Operation(
        "One of the caller's traces", "traces", {200: ref("Trace")}, errors=(404, 503),
        schemas=_SCHEMAS),
    ("GET", "/admin/traces"): Operation(
        "Every account's traces", "admin", {200: ref("TraceList")}, errors=(503,),
        query=[*_TRACE_QUERY, query("account_id", STR, "one account only")], schemas=_SCHEMAS),
    ("GET", "/admin/traces/{request_id}"): Operation(
        "Any account's trace", "admin", {200: ref("Trace")}, errors=(404, 503),
        schemas=_SCHEMAS),
}  # fmt: skip
