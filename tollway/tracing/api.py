"""``/v1/traces`` (the caller's account) and ``/admin/traces`` (every account).

Handlers are ``async (request) -> (status, body)`` as a ``plugins.Route``
expects. Listing filters: ``model``, ``deployment``, ``key_id``, ``status``
(``200``, ``4xx``, ``ok`` = below 400, ``error`` = 400 and up), ``since`` and
``until`` (Unix seconds or ISO 8601), ``limit`` (1–100, default 20) and
``cursor`` (the opaque ``next_cursor`` of the previous page); admins may also
filter by ``account_id``. Newest first. Another account's trace is a 404.
``/v1/traces/{id}`` takes tollway's request id or the client's ``X-Request-Id``
(its newest match in the caller's account).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from tollway.bounds import INT64_MAX
from tollway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from tollway.plugins.contract import Access
from tollway.tracing.store import TraceQuery, TraceStore

__all__ = [
    "STATUS_PATTERN",
    "TraceAPI",
    "build_query",
    "decode_cursor",
    "encode_cursor",
    "parse_time",
]

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def parse_time(value: str, param: str) -> float:
    """Unix seconds (``1718000000`` or ``1718000000.5``) or ISO 8601 (UTC if no zone)."""
    try:
        ts = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(
                f"'{param}' must be Unix seconds or an ISO 8601 time, got {value!r}.", param=param
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            return when.timestamp()
        except OverflowError:  # a zone offset that moves year 1 or 9999 out of range
            raise InvalidRequest(f"'{param}' is out of range.", param=param) from None
    if not math.isfinite(ts):
        raise InvalidRequest(f"'{param}' must be a finite number.", param=param)
    return ts


def encode_cursor(received_at: float, seq: int) -> str:
    """The opaque position after a trace."""
    return base64.urlsafe_b64encode(orjson.dumps([received_at, seq])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Inverse of ``encode_cursor``; a bad cursor is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, seq = orjson.loads(raw)
        if isinstance(ts, int | float) and type(seq) is int and 0 <= seq <= INT64_MAX:
            return float(ts), seq
    except (binascii.Error, ValueError, TypeError):
        pass
    raise InvalidRequest("'cursor' is not a cursor this API returned.", param="cursor")


# what ``status`` accepts (empty = no filter); the OpenAPI document states the same pattern
STATUS_PATTERN = "(|[1-5][0-9][0-9]|[1-5][xX][xX]|[oO][kK]|[eE][rR][rR][oO][rR])"
_STATUS = re.compile(STATUS_PATTERN)


def _status_range(value: str) -> tuple[int | None, int | None]:
    if _STATUS.fullmatch(value) is None:
        raise InvalidRequest(
            "'status' must be an HTTP status (200), a class (4xx), 'ok' or 'error'.",
            param="status",
        )
    v = value.lower()
    if v == "ok":
        return None, 399
    if v == "error":
        return 400, None
    if len(v) == 3 and v[0] in "12345" and v[1:] == "xx":
        base = int(v[0]) * 100
        return base, base + 99
    return int(v), int(v)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    n = int(value) if value.isascii() and value.isdigit() and len(value) <= 3 else 0
    if not 1 <= n <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return n


def build_query(q: dict[str, str], *, account_id: str | None, admin: bool) -> TraceQuery:
    """A ``TraceQuery`` from query-string parameters (validated)."""
    status_min, status_max = _status_range(q["status"]) if q.get("status") else (None, None)
    if admin and q.get("account_id"):
        account_id, admin = q["account_id"], False
    return TraceQuery(
        account_id=account_id,
        all_accounts=admin,
        model=q.get("model") or None,
        deployment=q.get("deployment") or None,
        key_id=q.get("key_id") or None,
        status_min=status_min,
        status_max=status_max,
        since=parse_time(q["since"], "since") if q.get("since") else None,
        until=parse_time(q["until"], "until") if q.get("until") else None,
        after=decode_cursor(q["cursor"]) if q.get("cursor") else None,
        limit=_limit(q.get("limit")),
    )


class TraceAPI:
    """The four trace endpoints over one ``TraceStore``."""

    def __init__(self, store: TraceStore | None) -> None:
        self.store = store

    def _store(self) -> TraceStore:
        if self.store is None:
            raise GatewayError("Traces are not enabled on this gateway.", status=503,
                               code="traces_unavailable")
        return self.store

    def routes(self) -> list[tuple[str, str, Any, Access]]:
        """``(method, pattern, handler, access)`` for the plugin's ``Route``s."""
        return [
            ("GET", "/v1/traces", self.list_traces, "key"),
            ("GET", "/v1/traces/{request_id}", self.get_trace, "key"),
            ("GET", "/admin/traces", self.admin_list_traces, "admin"),
            ("GET", "/admin/traces/{request_id}", self.admin_get_trace, "admin"),
        ]

    async def get_trace(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """GET /v1/traces/{request_id}: one trace of the caller's account."""
        account_id = _account_of(request)
        request_id = request["path_params"]["request_id"]
        record = await self._store().get(request_id, account_id)
        if record is None:
            raise NotFound(f"No trace with id '{request_id}'.", code="trace_not_found")
        return 200, record

    async def list_traces(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """GET /v1/traces: the caller's account's traces, newest first."""
        account_id = _account_of(request)
        query = build_query(request.get("query") or {}, account_id=account_id, admin=False)
        return 200, await self._page(query)

    async def admin_get_trace(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """GET /admin/traces/{request_id}: any account's trace."""
        _require_admin(request)
        request_id = request["path_params"]["request_id"]
        record = await self._store().get(request_id, None)
        if record is None:
            raise NotFound(f"No trace with id '{request_id}'.", code="trace_not_found")
        return 200, record

    async def admin_list_traces(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """GET /admin/traces: every account's traces (``account_id`` filters)."""
        _require_admin(request)
        query = build_query(request.get("query") or {}, account_id=None, admin=True)
        return 200, await self._page(query)

    async def _page(self, query: TraceQuery) -> dict[str, Any]:
        limit = query.limit
        rows = await self._store().find(replace(query, limit=limit + 1))
        has_more = len(rows) > limit
        rows = rows[:limit]
        cursor = None
        if has_more:
            seq, last = rows[-1]
            cursor = encode_cursor(last["received_at"], seq)
        data = [record for _seq, record in rows]
        return {"object": "list", "data": data, "has_more": has_more, "next_cursor": cursor}


def _account_of(request: dict[str, Any]) -> str:
    auth = request.get("auth")
    account_id = getattr(auth, "account_id", None)
    if not account_id:
        raise AuthenticationError("An API key is required to read traces.")
    return str(account_id)


def _require_admin(request: dict[str, Any]) -> None:
    if not request.get("is_admin"):
        raise PermissionDenied("Reading every account's traces needs the admin key.")
