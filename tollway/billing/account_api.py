"""Caller endpoints: ``GET /v1/account`` (balance, reserved, available) and ``GET /v1/ledger``.

Handlers are ``async (request) -> (status, body)``; ``request["auth"]`` is the
caller's ``AuthResult`` (the app authenticates before calling).
"""

from __future__ import annotations

from typing import Any, Protocol

from tollway.auth import AuthResult
from tollway.billing.ledger import account_json, entry_json, require_account
from tollway.bounds import INT64_MAX
from tollway.errors import AuthenticationError, InvalidRequest
from tollway.storage.base import AccountStore, LedgerStore

__all__ = ["AccountAPI", "ledger_page"]

MAX_PAGE = 100


class _Store(AccountStore, LedgerStore, Protocol):
    """Accounts plus ledger (structural)."""


def _whole(
    query: dict[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    """A query parameter as a whole number in [low, high] (ASCII digits only), or a 400."""
    text = query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and low <= int(text) <= high):
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}.",
                             param=name, code="invalid_value")  # fmt: skip
    return int(text)


def _page_args(query: dict[str, str]) -> tuple[int | None, int]:
    limit = _whole(query, "limit", 20, 1, MAX_PAGE)
    assert limit is not None
    return _whole(query, "after", None, 1, INT64_MAX), limit


async def ledger_page(store: LedgerStore, account_id: str, query: dict[str, str]) -> dict[str, Any]:
    """One page of entries, newest first; ``?after=<last id>`` gives the next (OpenAI style)."""
    after, limit = _page_args(query)
    entries = await store.entries(account_id, before=after, limit=limit + 1)
    page = entries[:limit]
    return {
        "object": "list",
        "data": [entry_json(e) for e in page],
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": len(entries) > limit,
    }


class AccountAPI:
    """The authenticated caller's own account and ledger."""

    def __init__(self, store: Any, extra_fields: Any = None) -> None:
        self._store = store
        self._extra_fields = extra_fields  # async (caller) -> dict: the plugins' fields

    @staticmethod
    def _caller(request: dict[str, Any]) -> AuthResult:
        auth = request.get("auth")
        if not isinstance(auth, AuthResult):
            raise AuthenticationError("You didn't provide an API key.")
        return auth

    async def get_account(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``GET /v1/account``."""
        caller = self._caller(request)
        account = await require_account(self._store, caller.account_id)
        body = account_json(account)
        if self._extra_fields is not None:  # e.g. tollway.limits' "spend_caps"
            body.update(await self._extra_fields(caller))
        return 200, body

    async def get_ledger(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``GET /v1/ledger?limit=&after=``."""
        caller = self._caller(request)
        return 200, await ledger_page(self._store, caller.account_id, request.get("query") or {})
