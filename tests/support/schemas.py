"""Validate tollway's output against OpenAI's published schemas (shared/conformance)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["CONFORMANCE", "validate"]

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


def _nullable(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` → JSON Schema's null type."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "$ref" in node or "anyOf" in node or "oneOf" in node or "allOf" in node:
            node = {"anyOf": [node, {"type": "null"}]}
        elif isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
    return node


@cache
def _validators() -> tuple[Registry, dict[str, Any]]:
    doc = json.loads((CONFORMANCE / "openai-chat-schemas.extract.json").read_text())
    doc = _nullable(doc)
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openai", resource)
    return registry, doc["components"]["schemas"]


def validate(instance: Any, schema_name: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` fits the named schema."""
    registry, _ = _validators()
    schema = {"$ref": f"urn:openai#/components/schemas/{schema_name}"}
    Draft202012Validator(schema, registry=registry).validate(instance)
