"""Numbers and nesting at the chat boundary: out of bounds is a 400 naming the field, never a 5xx.

Billing is on (a real SQLite file) so that every accepted value also goes through the
reservation and settlement; an OpenAI-compatible fake upstream receives what passes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.servers import Upstream, run_tollway
from tollway.bounds import MAX_JSON_DEPTH

ADMIN = {"Authorization": "Bearer adm"}
MESSAGES = [{"role": "user", "content": "hi"}]
PRICES = {"input_per_mtok": 1, "output_per_mtok": 2}


async def _answer(request: web.Request, upstream: Upstream) -> web.Response:
    return web.json_response({
        "id": "x", "object": "chat.completion", "created": 1, "model": "u",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    })  # fmt: skip


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[httpx.Client, dict[str, str], Upstream]]:
    with Upstream(_answer) as upstream:
        config = {
            "database": f"sqlite:///{tempfile.mkdtemp()}/t.db",
            "admin_key": "adm",
            "billing": {"enabled": True},
            "providers": {"sim": {"type": "simulated"},
                          "up": {"type": "openai", "base_url": upstream.base_url}},
            "models": {
                "echo": {"deployments": [{"provider": "sim", "model": "echo", "prices": PRICES}]},
                "up": {"deployments": [{"provider": "up", "model": "u", "prices": PRICES}]},
            },
        }  # fmt: skip
        with run_tollway(config) as url, httpx.Client(base_url=url, timeout=30) as client:
            acct = client.post("/admin/accounts", json={"name": "a", "credit_usd": "1000000"},
                               headers=ADMIN).json()  # fmt: skip
            key = client.post(f"/admin/accounts/{acct['id']}/keys", json={},
                              headers=ADMIN).json()["key"]  # fmt: skip
            yield client, {"Authorization": f"Bearer {key}"}, upstream


def _chat(gw: Any, model: str = "echo", **fields: Any) -> httpx.Response:
    client, auth, _ = gw
    return client.post(  # type: ignore[no-any-return]
        "/v1/chat/completions", json={"model": model, "messages": MESSAGES, **fields},
        headers=auth,
    )  # fmt: skip


def _refused(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [2**31, 2**62, 2**63 - 1, 2**64 - 1, 0, -1])
def test_token_caps_out_of_bounds(gateway: Any, field: str, value: int) -> None:
    _refused(_chat(gateway, **{field: value}), field)


def test_token_cap_at_the_bound_is_reserved_and_served(gateway: Any) -> None:
    client, _, _ = gateway
    response = _chat(gateway, max_tokens=2**31 - 1)  # reserves $4,295 of the $1M credit
    assert response.status_code == 200, response.text
    assert client.get("/admin/audit", headers=ADMIN).json() == {"ok": True, "violations": []}


def test_other_integer_fields(gateway: Any) -> None:
    _refused(_chat(gateway, seed=2**63), "seed")
    _refused(_chat(gateway, seed=-(2**63) - 1), "seed")
    assert _chat(gateway, seed=-(2**63)).status_code == 200
    _refused(_chat(gateway, logit_bias={"50256": 101}), "logit_bias.50256")
    _refused(_chat(gateway, logit_bias={"50256": 2**64 - 1}), "logit_bias.50256")
    _refused(_chat(gateway, top_logprobs=2**63), "top_logprobs")
    _refused(_chat(gateway, n=2**63), "n")


def _nested(depth: int) -> Any:
    node: Any = {}
    for _ in range(depth - 1):
        node = {"a": node}
    return node


def test_deep_nesting_is_refused_naming_the_field(gateway: Any) -> None:
    for depth in (MAX_JSON_DEPTH, 254, 300, 800):
        tool = {"type": "function", "function": {"name": "f", "parameters": _nested(depth)}}
        _refused(_chat(gateway, tools=[tool]), "tools.[0].function.parameters")
        _refused(_chat(gateway, "up", tools=[tool]), "tools.[0].function.parameters")
        _refused(_chat(gateway, "up", response_format={
            "type": "json_schema", "json_schema": _nested(depth)}), "response_format.json_schema")
        _refused(_chat(gateway, "up", x=_nested(depth)), "x")


def test_nesting_at_the_limit_reaches_the_upstream(gateway: Any) -> None:
    _, _, upstream = gateway
    # the body is level 1, tools 2, the tool 3, function 4, parameters 5
    tool = {"type": "function",
            "function": {"name": "f", "parameters": _nested(MAX_JSON_DEPTH - 4)}}  # fmt: skip
    response = _chat(gateway, "up", tools=[tool])
    assert response.status_code == 200, response.text
    assert json.dumps(upstream.requests[-1]["tools"]) == json.dumps([tool])
