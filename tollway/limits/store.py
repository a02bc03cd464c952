"""Stored limits (table ``tenant_limits``): what the CLI and the admin API set at run time.

Each row holds the fields set for one key or account as JSON; the config's limits
are merged under them (``rules``). A field set to null through an update is
removed (the config's value, if any, applies again). Rows are never deleted, so
``changed_since`` sees every change and other instances pick it up.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from tollway.limits.config import LimitSpec
from tollway.storage.database import Database

__all__ = [
    "Scope", "all_limits", "changed_since", "get_limits", "limits_of", "update_limits",
]

Scope = Literal["key", "account"]


def _spec(text: str) -> LimitSpec:
    return LimitSpec.model_validate(json.loads(text))


async def get_limits(db: Database, scope: Scope, subject_id: str) -> LimitSpec | None:
    row = await db.fetchrow(
        "SELECT spec FROM tenant_limits WHERE scope = ? AND subject_id = ?", scope, subject_id
    )
    return _spec(row["spec"]) if row else None


async def update_limits(
    db: Database, scope: Scope, subject_id: str, changes: dict[str, Any], *, replace: bool = False
) -> LimitSpec:
    """Merge ``changes`` (a None value removes that field) into the stored spec; return it.

    ``changes`` must already be valid (``LimitSpec`` fields); the result is validated too.
    """
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT spec FROM tenant_limits WHERE scope = ? AND subject_id = ?", scope, subject_id
        )
        data: dict[str, Any] = {} if replace or row is None else json.loads(row["spec"])
        for name, value in changes.items():
            if value is None:
                data.pop(name, None)
            else:
                data[name] = value
        spec = LimitSpec.model_validate(data)
        text = json.dumps(spec.model_dump(mode="json", exclude_unset=True), sort_keys=True)
        now = time.time()
        if row is None:
            await tx.execute(
                "INSERT INTO tenant_limits (scope, subject_id, spec, updated_at)"
                " VALUES (?, ?, ?, ?)",
                scope, subject_id, text, now,
            )  # fmt: skip
        else:
            await tx.execute(
                "UPDATE tenant_limits SET spec = ?, updated_at = ?"
                " WHERE scope = ? AND subject_id = ?",
                text, now, scope, subject_id,
            )  # fmt: skip
    return spec


async def limits_of(db: Database, key_id: str, account_id: str) -> dict[tuple[str, str], LimitSpec]:
    """The stored limits of one key and its account."""
    rows = await db.fetch(
        "SELECT scope, subject_id, spec FROM tenant_limits WHERE (scope = 'key' AND subject_id = ?)"
        " OR (scope = 'account' AND subject_id = ?)",
        key_id, account_id,
    )  # fmt: skip
    return {(r["scope"], r["subject_id"]): _spec(r["spec"]) for r in rows}


async def all_limits(db: Database) -> dict[tuple[str, str], LimitSpec]:
    rows = await db.fetch("SELECT scope, subject_id, spec FROM tenant_limits")
    return {(r["scope"], r["subject_id"]): _spec(r["spec"]) for r in rows}


async def changed_since(db: Database, since: float) -> dict[tuple[str, str], LimitSpec]:
    rows = await db.fetch(
        "SELECT scope, subject_id, spec FROM tenant_limits WHERE updated_at >= ?", since
    )
    return {(r["scope"], r["subject_id"]): _spec(r["spec"]) for r in rows}
