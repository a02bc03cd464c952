"""``POST /v1/embeddings`` end to end: the official openai SDK against tollway (uvicorn on
127.0.0.1) in front of a local upstream that replays the recorded OpenAI answers."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing.test_e2e import BILLING, books, setup_account
from tests.support.servers import Upstream, run_tollway, serve_app
from tollway.assembly import create_app
from tollway.billing.plugin import BillingPlugin
from tollway.config import parse_settings
from tollway.embeddings import EmbeddingsPlugin
from tollway.tracing.plugin import TracingPlugin

REC = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "embeddings"
PRICES = {"input_per_mtok": 20, "output_per_mtok": 0}


def recording(name: str) -> Any:
    return json.loads((REC / name).read_text())


def replay(name: str, status: int = 200) -> Any:
    """An upstream handler answering every request with the recorded response."""

    async def handler(request: web.Request, upstream: Upstream) -> web.Response:
        return web.json_response(recording(name), status=status)

    return handler


def config(upstream_url: str, dsn: str | None = None, **dep: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "providers": {"up": {"type": "openai", "base_url": upstream_url},
                      "sim": {"type": "simulated"}},
        "models": {
            "te3": {"deployments": [{"provider": "up", "model": "text-embedding-3-small",
                                     "apis": ["chat", "embeddings"], "prices": PRICES,
                                     **dep}]},
            "sim-embed": {"deployments": [{"provider": "sim", "model": "sim-e",
                                           "prices": PRICES}]},
            "chat-only": {"deployments": [{"provider": "up", "model": "gpt",
                                           "prices": PRICES}]},
        },
    }  # fmt: skip
    if dsn is not None:
        out["database"] = dsn
    return out


@contextmanager
def billed(cfg: dict[str, Any]) -> Iterator[str]:
    app = create_app(parse_settings(cfg),
                     [BillingPlugin(BILLING), TracingPlugin(), EmbeddingsPlugin()])  # fmt: skip
    with serve_app(app) as url:
        yield url


def test_base64_passed_through_unchanged_and_decoded_by_the_sdk() -> None:
    rec = recording("pydantic-ai-te3small-base64-two-inputs.response.json")
    with Upstream(replay("pydantic-ai-te3small-base64-two-inputs.response.json")) as up, \
            run_tollway(config(up.base_url)) as url:  # fmt: skip
        raw = httpx.post(url + "/v1/embeddings", json={
            "model": "te3", "input": ["hello", "world"], "encoding_format": "base64"})
        assert raw.status_code == 200, raw.text
        body = raw.json()
        assert [d["embedding"] for d in body["data"]] == [d["embedding"] for d in rec["data"]]
        assert body["model"] == "te3" and body["usage"]["prompt_tokens"] == 2
        assert up.requests[0] == {"model": "text-embedding-3-small", "input": ["hello", "world"],
                                  "encoding_format": "base64"}  # fmt: skip
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        got = client.embeddings.create(model="te3", input=["hello", "world"])
        first = base64.b64decode(rec["data"][0]["embedding"])
        assert got.data[0].embedding == list(struct.unpack(f"<{len(first) // 4}f", first))
        assert up.requests[-1]["encoding_format"] == "base64"  # what the SDK asks for


def test_float_and_dimensions_passed_through() -> None:
    with Upstream(replay("vercel-ai-te3small-float.response.json")) as up, \
            run_tollway(config(up.base_url)) as url:  # fmt: skip
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        got = client.embeddings.create(model="te3", input=["a", "b"], encoding_format="float",
                                       dimensions=5)  # fmt: skip
        assert got.data[1].embedding[0] == pytest.approx(-0.037104916)
        assert got.usage.prompt_tokens == 12
        assert up.requests[0]["dimensions"] == 5 and up.requests[0]["encoding_format"] == "float"


def test_batch_limit_splits_and_keeps_order() -> None:
    async def echo(request: web.Request, upstream: Upstream) -> web.Response:
        body = await request.json()
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t))]}
                for i, t in enumerate(body["input"])]  # fmt: skip
        return web.json_response({"object": "list", "data": list(reversed(data)), "model": "m",
                                  "usage": {"prompt_tokens": len(data), "total_tokens": 0}})

    words = ["a" * n for n in range(1, 8)]
    with Upstream(echo) as up, run_tollway(config(up.base_url, options={
            "embeddings_batch_limit": 3})) as url:  # fmt: skip
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        got = client.embeddings.create(model="te3", input=words, encoding_format="float")
        assert [d.embedding[0] for d in got.data] == [float(n) for n in range(1, 8)]
        assert [d.index for d in got.data] == list(range(7))
        assert [len(r["input"]) for r in up.requests] == [3, 3, 1]
        assert got.usage.prompt_tokens == 7


def test_errors_are_openai_style() -> None:
    with Upstream(replay("pydantic-ai-error-404-model-not-found.response.json", 404)) as up, \
            run_tollway(config(up.base_url)) as url:  # fmt: skip
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError) as err:
            client.embeddings.create(model="te3", input="hi")
        assert err.value.body["code"] == "model_not_found"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nope", input="hi")
        with pytest.raises(openai.BadRequestError) as bad:
            client.embeddings.create(model="chat-only", input="hi")
        assert bad.value.body["param"] == "model"  # type: ignore[index]
        for body in ({"model": "te3"}, {"model": "te3", "input": []},
                     {"model": "te3", "input": "x", "encoding_format": "int8"},
                     {"model": "te3", "input": [1, "a", None]}, [1], {"input": "x"},
                     {"model": "te3", "input": "x", "dimensions": 0}):  # fmt: skip
            r = httpx.post(url + "/v1/embeddings", json=body)
            assert r.status_code == 400 and r.json()["error"]["message"], body


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["model", "input", "encoding_format", "dimensions", "user"]), c,
        max_size=5),
    max_leaves=10,
))
def test_fuzz_no_5xx(body: Any, fuzz_url: str) -> None:
    if isinstance(body, dict) and "model" in body:
        body["model"] = "sim-embed"
    r = httpx.post(fuzz_url + "/v1/embeddings", json=body)
    assert r.status_code < 500, (body, r.text)
    assert r.status_code == 200 or r.json()["error"]["message"]


@pytest.fixture(scope="module")
def fuzz_url() -> Iterator[str]:
    with run_tollway(config("http://127.0.0.1:9/v1")) as url:
        yield url


def test_simulated_is_deterministic_and_base64_matches_float() -> None:
    with run_tollway(config("http://127.0.0.1:9/v1")) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        a = client.embeddings.create(model="sim-embed", input="same", dimensions=16)
        b = client.embeddings.create(model="sim-embed", input=["same"], dimensions=16,
                                     encoding_format="float")  # fmt: skip
        assert len(a.data[0].embedding) == 16
        assert a.data[0].embedding == pytest.approx(b.data[0].embedding, abs=1e-6)
        tokens = client.embeddings.create(model="sim-embed", input=[[1, 2, 3], [4]],
                                          encoding_format="float")  # fmt: skip
        assert tokens.usage.prompt_tokens == 4 and len(tokens.data) == 2


def test_metered_ledger_equals_usage_and_trace_says_pass_through(dsn: str) -> None:
    account_id, key = setup_account(dsn, "1.00")
    with Upstream(replay("vercel-ai-te3small-float.response.json")) as up, \
            billed(config(up.base_url, dsn)) as url:  # fmt: skip
        auth = {"Authorization": f"Bearer {key}"}
        r = httpx.post(url + "/v1/embeddings", headers=auth, json={
            "model": "te3", "input": ["a", "b"], "encoding_format": "float"})
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        request_id = r.headers["x-tollway-request-id"]
        unauth = httpx.post(url + "/v1/embeddings", json={"model": "te3", "input": "a"})
        assert unauth.status_code == 401
        trace = None
        for _ in range(50):
            t = httpx.get(url + f"/v1/traces/{request_id}", headers=auth)
            if t.status_code == 200:
                trace = t.json()
                break
            import time

            time.sleep(0.1)
    _account, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert debit.kind == "debit" and debit.prompt_tokens == 12 and debit.completion_tokens == 0
    # 12 tokens × $20/M = $0.00024, plus the 5% platform fee
    assert debit.base_cost_micros == 240
    assert Decimal(str(usage["total_cost_usd"])) * 1_000_000 == debit.total_cost_micros
    assert usage["prompt_tokens"] == 12 and violations == []
    assert trace is not None and trace["api"] == {"endpoint": "embeddings",
                                                  "mode": "pass-through"}
    assert trace["usage"]["prompt_tokens"] == 12


def test_402_reaches_no_upstream(dsn: str) -> None:
    _account_id, key = setup_account(dsn, "0.000001")

    async def never(request: web.Request, upstream: Upstream) -> Any:
        raise AssertionError("the upstream must not be called")

    with Upstream(never) as up, billed(config(up.base_url, dsn)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.embeddings.create(model="te3", input="hello " * 200)
        assert err.value.status_code == 402 and up.requests == []


def test_firewall_redacts_inputs_and_its_field_stays_in_tollway() -> None:
    async def echo(request: web.Request, upstream: Upstream) -> web.Response:
        body = await request.json()
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({"object": "list", "model": "m", "data": [
            {"object": "embedding", "index": i, "embedding": [0.0]} for i in range(len(items))],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}})  # fmt: skip

    with Upstream(echo) as up, run_tollway(config(up.base_url)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        client.embeddings.create(model="te3", input=["mail bob@example.com now", "plain"],
                                 extra_body={"firewall": "redact-pii"})  # fmt: skip
        sent = up.requests[0]
        assert "firewall" not in sent and sent["input"][1] == "plain"
        assert "bob@example.com" not in sent["input"][0] and "[REDACTED" in sent["input"][0]
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(model="te3", input="sk-proj-" + "a1B2" * 12,
                                     extra_body={"firewall": "strict-block"})  # fmt: skip
        assert err.value.body["code"] == "content_filter"  # type: ignore[index]
        assert len(up.requests) == 1
