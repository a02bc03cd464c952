"""How an endpoint describes itself for ``GET /openapi.json``: ``Operation`` and schema helpers.

Core routes and each plugin's routes carry an ``Operation`` (``Route.doc``); the
document (``api/openapi.py``) is built from the routes the app mounts, so it cannot
list a route that is not there, nor miss one (an undocumented route is marked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["INT", "LIMIT", "NSTR", "STR", "USD", "Operation", "obj", "query", "ref"]


def ref(name: str) -> dict[str, str]:
    """A reference to the components schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], properties: dict[str, Any], extra: bool = True) -> dict[str, Any]:
    """An object schema."""
    return {"type": "object", "required": required, "properties": properties,
            "additionalProperties": extra}  # fmt: skip


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
INT = {"type": "integer"}
USD = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$", "description": "USD, six decimals"}
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (20)")


@dataclass(frozen=True)
class Operation:
    """One endpoint: summary, tag, parameters, body, success responses, error statuses.

    ``schemas`` are the components its references need (merged into the document);
    ``models`` are pydantic models whose JSON schemas join them (request bodies).
    """

    summary: str
    tag: str
    ok: dict[int, Any]  # status -> schema (or a content mapping under "content")
    errors: tuple[int, ...] = ()
    query: list[dict[str, Any]] = field(default_factory=list)
    body: str | None = None  # a components schema name
    body_required: bool = False
    schemas: dict[str, Any] = field(default_factory=dict)
    models: tuple[Any, ...] = ()
    error_schema: str = "Error"  # the error envelope's schema (Anthropic's on /v1/messages)
