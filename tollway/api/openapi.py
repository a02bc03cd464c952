"""``GET /openapi.json``: an OpenAPI 3.1 document of exactly the routes this app mounts.

Built once from the app's route table; request bodies are the JSON schemas of the
pydantic models that validate them, so the document cannot describe a body the
code does not check. ``model`` lists this gateway's aliases. A route with no
``doc`` (``Route.doc``, ``openapi_spec.OPERATIONS`` for the core's) is still listed, marked
``x-undocumented`` (a test fails on it).
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any, Protocol

from tollway.api.openapi_spec import SCHEMAS
from tollway.plugins.docs import Operation, ref
from tollway.wire.openai import ChatCompletionRequest

__all__ = ["openapi_document", "operations"]

_REF = "#/components/schemas/{model}"
# statuses any JSON endpoint may answer (bad parameters, wrong method, the connection limits)
_COMMON = (400, 405, 408, 413, 429, 431)
_WHY = {
    400: "Invalid request (the field is named in error.param)", 401: "Missing or invalid key",
    402: "Insufficient balance", 403: "Account disabled", 404: "Not found",
    405: "Method not allowed", 408: "Request headers or body too slow",
    409: "Already exists", 413: "Body too large", 429: "Too many connections or requests",
    431: "Headers too large", 502: "Upstream error", 503: "Unavailable",
    504: "Upstream timeout",
}  # fmt: skip


class _App(Protocol):
    settings: Any

    def route_table(self) -> list[tuple[str, str, str]]: ...
    def route_docs(self) -> dict[tuple[str, str], Operation]: ...


def operations(app: _App) -> dict[tuple[str, str], Operation]:
    """The documented operations of ``app``'s mounted routes."""
    return app.route_docs()


def _version() -> str:
    try:
        return metadata.version("tollway")
    except metadata.PackageNotFoundError:
        return "0"


def _schemas(app: _App) -> dict[str, Any]:
    schemas = dict(SCHEMAS)
    chat = ChatCompletionRequest.model_json_schema(ref_template=_REF)
    schemas.update(chat.pop("$defs", {}))
    aliases = sorted(app.settings.models)
    if aliases:
        chat["properties"]["model"] = {
            "type": "string", "enum": aliases,
            "description": "a model this gateway serves (GET /v1/models); others get 404",
        }  # fmt: skip
    schemas["ChatCompletionRequest"] = chat
    # other protocols' bodies name their model with {"$ref": ".../ModelAlias"}
    schemas["ModelAlias"] = chat["properties"]["model"] if aliases else {"type": "string"}
    for op in app.route_docs().values():
        schemas.update(op.schemas)
        for model in op.models:
            schemas[model.__name__] = model.model_json_schema(ref_template=_REF)
    return schemas


def _operation(method: str, pattern: str, access: str, op: Operation | None) -> dict[str, Any]:
    slug = re.sub(r"[^a-z0-9]+", "_", pattern.lower()).strip("_")
    out: dict[str, Any] = {"operationId": f"{method.lower()}_{slug}"}
    if op is None:
        out.update(summary="(undocumented)", responses={"200": {"description": "OK"}})
        out["x-undocumented"] = True
        return out
    out.update(summary=op.summary, tags=[op.tag])
    out["security"] = (
        [{"apiKey": []}] if access == "key" else [{"adminKey": []}] if access == "admin" else []
    )
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", pattern)
    ]
    if params or op.query:
        out["parameters"] = [*params, *op.query]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": ref(op.body)}},
        }
    responses: dict[str, Any] = {}
    for status, schema in op.ok.items():
        content = schema.get("content") or {"application/json": {"schema": schema}}
        responses[str(status)] = {"description": "OK", "content": content}
    errors = set(op.errors)
    if access != "raw":
        errors |= set(_COMMON)
    if access in ("key", "admin"):
        errors |= {401, 403} if access == "key" else {401}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": _WHY.get(status, "Error"),
            "content": {"application/json": {"schema": ref(op.error_schema)}},
        }
    out["responses"] = responses
    return out


def openapi_document(app: _App) -> dict[str, Any]:
    """The document for ``app``'s mounted routes."""
    paths: dict[str, dict[str, Any]] = {}
    docs = app.route_docs()
    for method, pattern, access in app.route_table():
        op = docs.get((method, pattern))
        paths.setdefault(pattern, {})[method.lower()] = _operation(method, pattern, access, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tollway",
            "version": _version(),
            "description": "An OpenAI-compatible LLM gateway. Errors use OpenAI's envelope "
            '{"error": {"message", "type", "param", "code"}}.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas(app),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "a tollway API key (tw-…)"},
                "adminKey": {"type": "http", "scheme": "bearer",
                             "description": "the admin key (admin_key or TOLLWAY_ADMIN_KEY)"},
            },  # fmt: skip
        },
    }
