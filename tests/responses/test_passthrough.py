"""Pass-through to a deployment that speaks the Responses API: the recorded OpenAI streams
(``shared/conformance/streams/responses``) replayed by a local upstream reach the official
SDK unchanged (every event, unknown types, ``sequence_number``), metered from
``response.completed``'s usage, whose cost figures equal the ledger entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.billing.test_e2e import BILLING, PRICES, books, setup_account
from tests.support.servers import Upstream, run_tollway, send_sse, serve_app
from tollway.assembly import create_app
from tollway.billing.plugin import BillingPlugin
from tollway.config import parse_settings
from tollway.responses import ResponsesPlugin
from tollway.tracing.plugin import TracingPlugin

CONF = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
STREAMS = sorted((CONF / "streams" / "responses").glob("*.sse"))


def events_of(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for part in raw.split(b"\n\n"):
        data = b"".join(line[5:].strip() for line in part.split(b"\n")
                        if line.startswith(b"data:"))  # fmt: skip
        if data:
            out.append(json.loads(data))
    return out


def config(base: str, dsn: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "providers": {"oai": {"type": "openai", "base_url": base}},
        "models": {"gpt": {"deployments": [{"provider": "oai", "model": "gpt-4o",
                                            "apis": ["chat", "responses"], "prices": PRICES}]},
                   "chat": {"deployments": [{"provider": "oai", "model": "gpt-4o",
                                             "prices": PRICES}]}},
    }  # fmt: skip
    if dsn:
        out["database"] = dsn
    return out


def replay(raw: bytes) -> Any:
    async def handler(request: web.Request, upstream: Upstream) -> Any:
        return await send_sse(request, raw, upstream)

    return handler


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_recorded_stream_relayed_unchanged(path: Path) -> None:
    raw = path.read_bytes()
    want = events_of(raw)
    with Upstream(replay(raw)) as up, run_tollway(config(up.base_url)) as url:
        body = {"model": "gpt", "input": "hi", "stream": True,
                "tools": [{"type": "web_search"}], "some_future_field": {"x": 1}}
        r = httpx.post(url + "/v1/responses", json=body)
        assert r.status_code == 200
        got = events_of(r.content)
        assert up.requests[0] == {**body, "model": "gpt-4o"}  # every field, untouched
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            if w.get("type") in ("response.completed", "response.incomplete"):
                assert {k: v for k, v in g["response"].items() if k != "usage"} == {
                    k: v for k, v in w["response"].items() if k != "usage"}
                for k, v in (w["response"].get("usage") or {}).items():
                    assert g["response"]["usage"][k] == v
            else:
                assert g == w


def test_sdk_stream_final_response_from_recording() -> None:
    raw = (CONF / "streams" / "responses" / "mirascope-gpt4o-text.sse").read_bytes()
    with Upstream(replay(raw)) as up, run_tollway(config(up.base_url)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with c.responses.stream(model="gpt", input="hi") as stream:
            seqs = [e.sequence_number for e in stream]
            final = stream.get_final_response()
        assert seqs == list(range(len(seqs)))
        assert final.output_text and final.usage is not None


def test_non_stream_and_upstream_errors() -> None:
    ok = json.loads((CONF / "responses-json" / "mirascope-gpt4o-text.json").read_text())
    bad = json.loads((CONF / "responses-json" / "mirascope-error-400-model-not-found.json")
                     .read_text())  # fmt: skip

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        body = await request.json()
        if body["input"] == "bad":
            return web.json_response(bad, status=400)
        return web.json_response(ok)

    with Upstream(handler) as up, run_tollway(config(up.base_url)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = c.responses.create(model="gpt", input="hi")
        assert r.output_text and r.usage is not None
        with pytest.raises(openai.BadRequestError):
            c.responses.create(model="gpt", input="bad")
        assert c.responses.retrieve(r.id).id == r.id  # kept in tollway's store too


def test_metered_from_completed_usage(dsn: str) -> None:
    raw = (CONF / "streams" / "responses" / "mirascope-gpt4o-text.sse").read_bytes()
    want = next(e for e in events_of(raw) if e["type"] == "response.completed")
    want_usage = want["response"]["usage"]
    account_id, key = setup_account(dsn, "5.00")
    with Upstream(replay(raw)) as up, contextmanager(_billed)(config(up.base_url, dsn)) as url:
        r = httpx.post(url + "/v1/responses", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "gpt", "input": "hi", "stream": True})  # fmt: skip
        done = next(e for e in events_of(r.content) if e["type"] == "response.completed")
    usage = done["response"]["usage"]
    _, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert (debit.prompt_tokens, debit.completion_tokens) == (
        want_usage["input_tokens"], want_usage["output_tokens"])
    assert Decimal(str(usage["total_cost_usd"])) * 1_000_000 == debit.total_cost_micros > 0
    assert violations == []
    # the output cap the reservation counted is the one the upstream is held to
    cap = up.requests[0].get("max_output_tokens")
    assert isinstance(cap, int) and cap > 0


def _billed(cfg: dict[str, Any]) -> Iterator[str]:
    app = create_app(parse_settings(cfg),
                     [BillingPlugin(BILLING), TracingPlugin(), ResponsesPlugin()])  # fmt: skip
    with serve_app(app) as url:
        yield url


def test_cancel_relayed_for_passed_through_background_response_only() -> None:
    queued = {"id": "resp_bg1", "object": "response", "status": "queued", "store": True,
              "background": True, "output": [], "usage": None, "model": "gpt-4o"}

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        if request.path.endswith("/cancel"):
            return web.json_response({**queued, "status": "cancelled"})
        return web.json_response(queued)

    with Upstream(handler) as up, run_tollway(config(up.base_url)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = c.responses.create(model="gpt", input="long job", background=True)
        assert r.status == "queued"
        assert c.responses.cancel(r.id).status == "cancelled"
        with pytest.raises(openai.NotFoundError):
            c.responses.cancel("resp_unknown")


def test_a_firewall_on_a_pass_through_model_applies_by_translating() -> None:
    """A relayed body and stream would escape a firewall: with one that filters the response
    (or would redact the request), tollway translates onto the chat pipeline instead, so the
    upstream reads the redacted request and the client the redacted answer; blocking still
    refuses before any upstream call; with no firewall the request is passed through."""
    raw = (CONF / "streams" / "responses" / "mirascope-gpt4o-text.sse").read_bytes()

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        body = upstream.requests[-1]
        if "messages" not in body:  # the Responses API: the recording
            return await send_sse(request, raw, upstream)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "Write to alice@example.com today."}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}})

    with Upstream(handler) as up, run_tollway(config(up.base_url)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            c.responses.create(model="gpt", input="key sk-proj-" + "a1B2" * 12,
                               extra_body={"firewall": "strict-block"})  # fmt: skip
        assert err.value.body["code"] == "content_filter"  # type: ignore[index]
        assert up.requests == []

        r = c.responses.create(model="gpt", input="mail bob@example.com",
                               extra_body={"firewall": "redact-pii"})  # fmt: skip
        sent = json.dumps(up.requests[-1])
        assert "messages" in up.requests[-1] and "bob@example.com" not in sent
        assert "firewall" not in up.requests[-1]
        assert "alice@example.com" not in r.output_text and "today" in r.output_text

        r = c.responses.create(model="gpt", input="hello", extra_body={"firewall": "monitor"})
        assert "messages" in up.requests[-1] and "firewall" not in up.requests[-1]
        assert "alice@example.com" in r.output_text  # monitor changes nothing

        c.responses.create(model="gpt", input="hello", stream=True).close()
        assert up.requests[-1]["input"] == "hello"  # no firewall: passed through

