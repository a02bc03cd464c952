"""Limits at run time: the admin API (``/admin/keys/{key}/limits``,
``/admin/accounts/{account}/limits``) and the shared parsing the CLI uses too.

``GET`` shows the stored limits, the effective ones (config merged under them) and,
for spend caps, this period's figures. ``POST`` merges the body's fields into the
stored limits (a field set to null is removed, so the config's value applies again);
``?replace=true`` replaces them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tollway.errors import InvalidRequest, NotFound, PermissionDenied
from tollway.limits.config import SPEC_FIELDS, LimitSpec, check_usd
from tollway.limits.store import Scope, get_limits, update_limits

if TYPE_CHECKING:
    from tollway.limits.feature import LimitsFeature

__all__ = ["LIMIT_ROUTES", "LimitsAdmin", "check_changes", "spec_json"]

LIMIT_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/admin/keys/{key}/limits", "get_key_limits"),
    ("POST", "/admin/keys/{key}/limits", "set_key_limits"),
    ("GET", "/admin/accounts/{account}/limits", "get_account_limits"),
    ("POST", "/admin/accounts/{account}/limits", "set_account_limits"),
]


def check_changes(body: Any) -> dict[str, Any]:
    """A limits update (JSON object of ``LimitSpec`` fields, null = remove), validated."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    for name in body:
        if name not in SPEC_FIELDS:
            raise InvalidRequest(f"Unknown parameter: '{str(name)[:64]}'.", param=str(name)[:64],
                                 code="invalid_value")  # fmt: skip
    changes = dict(body)
    if changes.get("spend_cap_usd") is not None:
        try:
            changes["spend_cap_usd"] = check_usd(changes["spend_cap_usd"])
        except ValueError as exc:
            raise InvalidRequest(f"Invalid value for 'spend_cap_usd': {exc}.",
                                 param="spend_cap_usd", code="invalid_value") from None
    try:  # strict: JSON's types exactly (no "5" for 5, no true for 1)
        LimitSpec.model_validate({k: v for k, v in changes.items() if v is not None}, strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise InvalidRequest(
            f"Invalid value for '{param}': {err['msg'].removeprefix('Value error, ')}.",
            param=param, code="invalid_value",
        ) from None  # fmt: skip
    if changes.get("spend_cap_usd") is not None:
        changes["spend_cap_usd"] = str(changes["spend_cap_usd"])  # stored as JSON text
    return changes


def spec_json(spec: LimitSpec | None, *, set_only: bool = False) -> dict[str, Any]:
    if spec is None:
        return {}
    return spec.model_dump(mode="json", exclude_unset=set_only, exclude_none=True)


class LimitsAdmin:
    """Admin handlers over the limits feature (and its store)."""

    def __init__(self, feature: LimitsFeature) -> None:
        self._feature = feature

    @property
    def _store(self) -> Any:
        assert self._feature.store is not None, "limits not started"
        return self._feature.store

    async def _subject(self, request: dict[str, Any], scope: Scope) -> tuple[str, str, str]:
        """(subject id, account id, account name) of the path's key or account; 404 if none."""
        if not request.get("is_admin"):
            raise PermissionDenied("A valid admin key is required.")
        if scope == "key":
            key = await self._store.get_key(request["path_params"]["key"])
            if key is None:
                raise NotFound(f"no key {request['path_params']['key']!r}")
            account = await self._store.get_account(key.account_id)
            return key.id, key.account_id, account.name if account else ""
        account = await self._store.get_account(request["path_params"]["account"])
        if account is None:
            raise NotFound(f"no account {request['path_params']['account']!r}")
        return account.id, account.id, account.name

    async def _show(self, scope: Scope, subject: str, account_id: str, name: str) -> dict[str, Any]:
        stored = await get_limits(self._store.db, scope, subject)
        rules = self._feature.rules
        if scope == "key":
            effective = (await rules.plan(subject, account_id, name)).key
        else:
            cfg = rules.config
            effective = (cfg.accounts.get(subject) or cfg.accounts.get(name) or LimitSpec()).merged(
                stored
            )
        return {
            "object": "limits",
            "scope": scope,
            "id": subject,
            "stored": spec_json(stored, set_only=True),
            "effective": spec_json(effective),
        }

    async def _set(self, request: dict[str, Any], scope: Scope) -> tuple[int, dict[str, Any]]:
        subject, account_id, name = await self._subject(request, scope)
        replace_text = (request.get("query") or {}).get("replace", "false")
        if replace_text not in ("true", "false"):
            raise InvalidRequest("'replace' must be true or false.", param="replace",
                                 code="invalid_value")  # fmt: skip
        changes = check_changes(request.get("json"))
        replace = replace_text == "true"
        await update_limits(self._store.db, scope, subject, changes, replace=replace)
        await self._feature.refresh()
        return 200, await self._show(scope, subject, account_id, name)

    async def get_key_limits(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, await self._show("key", *await self._subject(request, "key"))

    async def set_key_limits(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return await self._set(request, "key")

    async def get_account_limits(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, await self._show("account", *await self._subject(request, "account"))

    async def set_account_limits(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return await self._set(request, "account")
