"""An upstream that fails after output began (issue 12, item 10).

Both modes end with the same error type; the trace records the error and whether
the client received output; and both are billed by one rule: what the upstream
generated, marked partial.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.support.books import ADMIN, PRICES, admin_trace, books, new_account
from tests.support.servers import Upstream, run_tollway


async def _dies(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(3):
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "u",
                 "choices": [{"index": 0, "delta": {"content": f"word{i} "},
                              "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    request.transport.close()  # type: ignore[union-attr]
    return resp


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    dsn = f"sqlite:///{tmp_path_factory.mktemp('errors') / 'tollway.db'}"
    account_id, key = new_account(dsn, "acme", "5.00")
    with Upstream(_dies) as upstream:
        config = {
            "database": dsn, "admin_key": ADMIN, "billing": {"enabled": True},
            "providers": {"up": {"type": "openai", "base_url": upstream.base_url},
                          "sim": {"type": "simulated"}},
            "models": {
                "dies": {"deployments": [{"provider": "up", "model": "u", "prices": PRICES}]},
                "sim-dies": {"deployments": [{"provider": "sim", "model": "error-midstream",
                                              "prices": PRICES}]},
            },
        }
        with run_tollway(config) as url:
            yield {"url": url, "dsn": dsn, "account_id": account_id, "key": key}


def debit_of(gw: dict[str, Any], request_id: str) -> Any:
    deadline = time.monotonic() + 5
    while True:
        account, entries, violations = books(gw["dsn"], gw["account_id"])
        found = [e.entry for e in entries if e.entry.request_id == request_id]
        if found or time.monotonic() > deadline:
            assert found and violations == [] and account.reserved_micros == 0
            return found[0]
        time.sleep(0.05)


def test_a_stream_cut_by_the_upstream_is_traced_as_an_error(gateway: dict[str, Any]) -> None:
    r = httpx.post(gateway["url"] + "/v1/chat/completions",
                   headers={"Authorization": f"Bearer {gateway['key']}"},
                   json={"model": "dies", "stream": True,
                         "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    event = json.loads([e for e in r.content.split(b"\n\n") if e][-1][6:])
    own = r.headers["x-request-id"]
    t = admin_trace(gateway["url"], own)
    assert t["status"] == 502 and t["partial"] is True
    assert t["error"] == {"message": event["error"]["message"], "type": "upstream_error",
                          "code": event["error"]["code"]}
    assert "connection broke" in t["error"]["message"]
    assert t["output_delivered"] == "partial"
    assert t["attempts"][0]["status"] == 502
    debit = debit_of(gateway, own)
    assert debit.partial and debit.completion_tokens > 0  # what the upstream generated


def test_both_modes_fail_alike_and_are_billed_alike(gateway: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=gateway["url"] + "/v1", api_key=gateway["key"],
                           max_retries=0)
    messages = [{"role": "user", "content": "go"}]
    with pytest.raises(openai.APIError) as streamed:
        for _ in client.chat.completions.create(model="sim-dies", messages=messages,
                                                stream=True):  # type: ignore[arg-type]
            pass
    with pytest.raises(openai.APIStatusError) as whole:
        client.chat.completions.with_raw_response.create(
            model="sim-dies", messages=messages)  # type: ignore[arg-type]
    assert whole.value.status_code == 502
    streamed_body, whole_body = streamed.value.body, whole.value.body
    assert isinstance(streamed_body, dict) and isinstance(whole_body, dict)
    assert whole_body == streamed_body  # same message, type and code in both modes
    assert whole_body["type"] == "upstream_error"

    own = whole.value.response.headers["x-request-id"]
    t = admin_trace(gateway["url"], own)
    assert t["status"] == 502 and t["error"]["type"] == "upstream_error"
    assert t["output_delivered"] == "none" and t["partial"] is True
    whole_debit = debit_of(gateway, own)
    listed = httpx.get(gateway["url"] + "/admin/traces", params={"model": "sim-dies"},
                       headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]
    streamed_trace = next(x for x in listed if x["stream"])
    assert streamed_trace["status"] == 502 and streamed_trace["output_delivered"] == "partial"
    assert streamed_trace["error"] == t["error"]
    streamed_debit = debit_of(gateway, streamed_trace["id"])
    for debit in (whole_debit, streamed_debit):  # one rule: what the upstream generated
        assert debit.partial and debit.completion_tokens > 0
    assert whole_debit.total_cost_micros == streamed_debit.total_cost_micros

