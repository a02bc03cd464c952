"""``GET /openapi.json`` describes exactly the routes the app mounts, with valid schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import SIM_MODELS, sim_config
from tests.support.servers import run_tollway
from tollway.api.openapi import openapi_document, operations
from tollway.assembly import create_app
from tollway.config import parse_settings

ROOT = Path(__file__).resolve().parents[2]


def _full_config(tmp_path: Path) -> dict[str, Any]:
    """Every feature that mounts routes: billing, traces (and /metrics), admin."""
    models = {name: {"deployments": [{**m["deployments"][0], "prices": "free"}]}
              for name, m in SIM_MODELS.items()}  # fmt: skip
    return sim_config(database=f"sqlite:///{tmp_path / 't.db'}", admin_key="adm", models=models,
                      billing={"enabled": True}, tracing={"enabled": True})  # fmt: skip


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def test_every_mounted_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    app = create_app(parse_settings(_full_config(tmp_path)))
    mounted = {(method, pattern) for method, pattern, _ in app.route_table()}
    assert mounted == set(operations(app))  # every mounted route is documented
    document = openapi_document(app)
    assert _operations(document) == mounted
    undocumented = [(p, m) for p, ops in document["paths"].items() for m, op in ops.items()
                    if op.get("x-undocumented")]  # fmt: skip
    assert undocumented == []


def test_a_smaller_gateway_documents_only_what_it_mounts() -> None:
    app = create_app(parse_settings(sim_config(tracing={"enabled": False})))
    document = openapi_document(app)
    assert ("GET", "/v1/account") not in _operations(document)
    assert ("POST", "/v1/chat/completions") in _operations(document)
    assert _operations(document) == {(m, p) for m, p, _ in app.route_table()}


def _validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    root = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:tollway", root)
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:tollway#/components/schemas/{name}"}, registry=registry
    )


def test_the_served_document_is_valid_and_matches_the_validation(tmp_path: Path) -> None:
    with run_tollway(_full_config(tmp_path)) as url:
        response = httpx.get(f"{url}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    chat = _validator(document, "ChatCompletionRequest")
    good = {"model": "sim-echo", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2**31 - 1, "seed": -(2**63), "logit_bias": {"1": -100}}  # fmt: skip
    assert chat.is_valid(good)
    for bad in ({**good, "max_tokens": 2**31}, {**good, "seed": 2**63},
                {**good, "logit_bias": {"1": 101}}, {**good, "model": "nope"},
                {**good, "messages": []}):  # fmt: skip
        assert not chat.is_valid(bad), bad
    credit = _validator(document, "CreditBody")
    assert credit.is_valid({"amount_usd": "12.50", "note": "top-up"})
    assert not credit.is_valid({"amount_usd": 2e9}) and not credit.is_valid({"amount_usd": True})
    assert not credit.is_valid({"amount_usd": 1, "other": 1})


def test_a_known_path_with_the_wrong_method_is_405(sim_gateway: str) -> None:
    for method, path, allow in [("DELETE", "/v1/models", "GET"),
                                ("GET", "/v1/chat/completions", "POST"),
                                ("POST", "/health", "GET")]:  # fmt: skip
        response = httpx.request(method, f"{sim_gateway}{path}")
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert httpx.delete(f"{sim_gateway}/nowhere").status_code == 404


def test_the_readme_links_the_document() -> None:
    assert "/openapi.json" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", ["/openapi.json", "/health"])
def test_public_documents_need_no_key(sim_gateway: str, path: str) -> None:
    assert httpx.get(f"{sim_gateway}{path}").status_code == 200


def _events(body: str) -> list[dict[str, str]]:
    """A text/event-stream body as the {event, data} objects its schema describes."""
    out = []
    for block in body.strip().split("\n\n"):
        event: dict[str, str] = {}
        for line in block.splitlines():
            field, _, value = line.partition(": ")
            event[field] = value
        out.append(event)
    return out


def _absolute(schema: Any) -> Any:
    """``schema`` with its document-relative ``$ref``s made absolute (``urn:tollway#…``)."""
    if isinstance(schema, dict):
        return {k: ("urn:tollway" + v if k == "$ref" and v.startswith("#") else _absolute(v))
                for k, v in schema.items()}  # fmt: skip
    if isinstance(schema, list):
        return [_absolute(v) for v in schema]
    return schema


@pytest.mark.parametrize("model", ["sim-reasoner", "sim-tool", "sim-lorem"])
def test_every_streamed_event_matches_its_documented_schema(sim_gateway: str, model: str) -> None:
    """Each event of a streamed chat completion, message and response is an instance of the
    ``text/event-stream`` schema the document publishes for it (schemathesis checks
    streamed answers against it too), and its data is JSON of the documented kind."""
    document = httpx.get(f"{sim_gateway}/openapi.json").json()
    hi = [{"role": "user", "content": "hi"}]
    streams = [
        ("/v1/chat/completions", {"Authorization": "Bearer x"},
         {"model": model, "stream": True, "messages": hi}),
        ("/v1/messages", {"x-api-key": "x", "anthropic-version": "2023-06-01"},
         {"model": model, "stream": True, "max_tokens": 64, "messages": hi}),
        ("/v1/responses", {"Authorization": "Bearer x"},
         {"model": model, "stream": True, "input": "hi"}),
    ]  # fmt: skip
    base = _validator(document, "")
    for path, headers, body in streams:
        response = httpx.post(f"{sim_gateway}{path}", json=body, headers=headers)
        assert response.status_code == 200 and "event-stream" in response.headers["content-type"]
        content = document["paths"][path]["post"]["responses"]["200"]["content"]
        schema = content["text/event-stream"]["schema"]
        validator = base.evolve(schema=_absolute(schema))
        if "$ref" in schema:  # the event's schema itself, to read what its data holds
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        data = schema["properties"]["data"]
        inner = data.get("contentSchema") or next(
            s["contentSchema"] for s in data["anyOf"] if "contentSchema" in s)
        inner_validator = base.evolve(schema=_absolute(inner))
        events = _events(response.text)
        assert len(events) >= 3
        for event in events:
            validator.validate(event)
            if event["data"] != "[DONE]":
                inner_validator.validate(json.loads(event["data"]))
