"""Wire fidelity through a running tollway (issue 11 items 4, 5, 6).

- the output cap goes upstream in the field the client used, else the one the
  upstream takes (an upstream that rejects ``max_tokens`` as OpenAI does);
- the served model is the first one a chunk names (Azure's first chunk names none),
  in the stream, the whole response, the ledger and the trace;
- fields an upstream adds (Groq's ``x_groq``, Perplexity's ``citations``, Azure's
  filter results) reach the client in both modes, never over tollway's own fields,
  and not past a firewall that may rewrite the text.
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

from tests.providers.recordings import CONFORMANCE, openai_whole, sse_data
from tests.support.books import ADMIN, PRICES, admin_trace, books, new_account
from tests.support.schemas import validate
from tests.support.servers import Upstream, run_tollway

GROQ = CONFORMANCE / "streams" / "openai" / "vercel-ai-groq-tool-call-xgroq-usage.sse"
SERVED = "gpt-4o-2024-11-20"
FILTERS = {"hate": {"filtered": False, "severity": "safe"}}
CITATIONS = ["https://example.org/a", "https://example.org/b"]
UNSUPPORTED = {"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
               "Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}


def _chunk(model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 7,
            "model": model, "choices": choices, **extra}


def _sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) \
        + b"data: [DONE]\n\n"


def azure_like(text: list[str]) -> list[dict[str, Any]]:
    """Azure's shape: a first chunk naming no model, with prompt filter results."""
    first = _chunk("", [], id="", created=0, prompt_filter_results=[
        {"prompt_index": 0, "content_filter_results": FILTERS}])
    body = [_chunk(SERVED, [{"index": 0, "delta": {"content": part},
                             "content_filter_results": FILTERS, "finish_reason": None}])
            for part in text]
    last = _chunk(SERVED, [{"index": 0, "delta": {}, "finish_reason": "stop",
                            "content_filter_results": {}}])
    usage = _chunk(SERVED, [], usage={"prompt_tokens": 9, "completion_tokens": 3,
                                      "total_tokens": 12})
    return [first, *body, last, usage]


def perplexity(text: list[str]) -> list[dict[str, Any]]:
    """Perplexity's shape: ``citations`` on every chunk, referred to as [1], [2]."""
    return [_chunk("sonar", [{"index": 0, "delta": {"content": part, "x_delta_note": "d"},
                              "finish_reason": None, "x_choice_note": "c"}],
                   citations=CITATIONS, usage=None) for part in text] + [
        _chunk("sonar", [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               citations=CITATIONS),
        _chunk("sonar", [], citations=CITATIONS, search_results=[{"url": CITATIONS[0]}],
               usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})]


def _whole(chunks: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    whole = openai_whole(chunks)
    whole.update(fields)
    return whole


async def _answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = upstream.requests[-1]
    model, stream = body["model"], bool(body.get("stream"))
    if model == "reasoner":  # OpenAI's reasoning models
        if "max_tokens" in body:
            return web.json_response(UNSUPPORTED, status=400)
        chunks = [_chunk("o4-mini-2025-04-16", [{"index": 0, "delta": {"content": "ok"},
                                                 "finish_reason": "stop"}])]
    elif model == "legacy":  # an older server that knows only max_tokens
        if "max_completion_tokens" in body:
            return web.json_response({"error": {
                "message": "Unsupported parameter: 'max_completion_tokens'",
                "type": "invalid_request_error", "param": "max_completion_tokens",
                "code": "unsupported_parameter"}}, status=400)
        chunks = [_chunk("legacy", [{"index": 0, "delta": {"content": "ok"},
                                     "finish_reason": "stop"}])]
    elif model == "azure":
        chunks = azure_like(["Hello", " from", " Azure"])
        if not stream:
            whole = _whole(chunks, model=SERVED, prompt_filter_results=chunks[0][
                "prompt_filter_results"])
            whole["choices"][0]["content_filter_results"] = FILTERS
            return web.json_response(whole)
    elif model == "late":  # content before any chunk names the model
        chunks = [_chunk("", [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]),
                  _chunk(SERVED, [{"index": 0, "delta": {"content": "b"},
                                   "finish_reason": "stop"}])]
    elif model == "groq":
        raw = GROQ.read_bytes()
        if stream:
            resp = web.Response(body=raw, content_type="text/event-stream")
            return resp
        chunks = sse_data(raw)
        return web.json_response(_whole(chunks, x_groq=chunks[0]["x_groq"]))
    else:  # perplexity
        chunks = perplexity(["See [1]", " and [2]."])
        if not stream:
            whole = _whole(chunks, citations=CITATIONS)
            whole["choices"][0]["x_choice_note"] = "c"
            whole["choices"][0]["message"]["x_delta_note"] = "dd"
            return web.json_response(whole)
    if stream:
        return web.Response(body=_sse(chunks), content_type="text/event-stream")
    return web.json_response(_whole(chunks))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    dsn = f"sqlite:///{tmp_path_factory.mktemp('fidelity') / 'tollway.db'}"
    account_id, key = new_account(dsn, "acme", "5.00")
    with Upstream(_answer) as upstream:
        def dep(model: str, **more: Any) -> dict[str, Any]:
            return {"deployments": [{"provider": "up", "model": model, "prices": PRICES,
                                     **more}]}

        config = {
            "database": dsn, "admin_key": ADMIN, "billing": {"enabled": True},
            "providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
            "models": {
                "reasoner": dep("reasoner", max_tokens_field="max_completion_tokens"),
                "reasoner-default": dep("reasoner"),
                "legacy": dep("legacy", max_tokens_field="max_completion_tokens"),
                "azure": dep("azure"), "late-alias": dep("late"), "groq": dep("groq"),
                "sonar": dep("sonar"),
            },
        }
        with run_tollway(config) as url:
            yield {"url": url, "dsn": dsn, "account_id": account_id, "key": key,
                   "upstream": upstream}


def _post(gw: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw["url"] + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {gw['key']}"},
                      json={"messages": [{"role": "user", "content": "hi"}], **body})


def _stream(gw: dict[str, Any], body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    r = _post(gw, {**body, "stream": True})
    assert r.status_code == 200, r.text
    chunks = [json.loads(line[6:]) for line in r.text.split("\n\n")
              if line.startswith("data: {")]
    for c in chunks:
        validate(c, "CreateChatCompletionStreamResponse")
    return r.headers["x-tollway-request-id"], chunks


def _debit_model(gw: dict[str, Any], request_id: str) -> str | None:
    deadline = time.monotonic() + 5
    while True:
        _account, entries, violations = books(gw["dsn"], gw["account_id"])
        found = [e.entry for e in entries if e.entry.request_id == request_id
                 and e.entry.kind == "debit"]
        if found or time.monotonic() > deadline:
            assert found and violations == []
            return found[0].model


# --- item 4: the output cap field -----------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_cap_goes_in_the_field_the_deployment_names(gateway: dict[str, Any],
                                                   stream: bool) -> None:
    r = _post(gateway, {"model": "reasoner", "stream": stream})
    assert r.status_code == 200, r.text
    sent = gateway["upstream"].requests[-1]
    assert "max_tokens" not in sent and sent["max_completion_tokens"] == 4096


def test_cap_in_the_client_field_wins_over_the_deployment(gateway: dict[str, Any]) -> None:
    r = _post(gateway, {"model": "legacy", "max_tokens": 50})  # the field this server takes
    assert r.status_code == 200, r.text
    sent = gateway["upstream"].requests[-1]
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent
    r = _post(gateway, {"model": "reasoner", "max_completion_tokens": 60})
    assert r.status_code == 200, r.text
    assert gateway["upstream"].requests[-1]["max_completion_tokens"] == 60


def test_the_wrong_field_is_the_upstream_error_unchanged(gateway: dict[str, Any]) -> None:
    """Without max_tokens_field a non-OpenAI host gets max_tokens (the documented default);
    OpenAI-style rejection reaches the client as OpenAI's 400, not a 5xx."""
    r = _post(gateway, {"model": "reasoner-default"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "max_tokens" and err["code"] == "unsupported_parameter"


# --- item 5: the served model ---------------------------------------------------------------

def test_served_model_from_the_first_chunk_that_names_one(gateway: dict[str, Any]) -> None:
    request_id, chunks = _stream(gateway, {"model": "azure",
                                           "stream_options": {"include_usage": True}})
    assert {c["model"] for c in chunks} == {SERVED}
    assert "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"]) \
        == "Hello from Azure"
    assert _debit_model(gateway, request_id) == SERVED
    assert admin_trace(gateway["url"], request_id)["served_model"] == SERVED
    r = _post(gateway, {"model": "azure"})
    assert r.json()["model"] == SERVED
    assert _debit_model(gateway, r.headers["x-tollway-request-id"]) == SERVED


def test_a_model_named_late_relabels_the_rest(gateway: dict[str, Any]) -> None:
    request_id, chunks = _stream(gateway, {"model": "late-alias"})
    # before a chunk names one: the deployment's model (as the ledger would record it)
    assert chunks[0]["model"] == "late" and chunks[-1]["model"] == SERVED
    assert _debit_model(gateway, request_id) == SERVED
    assert admin_trace(gateway["url"], request_id)["served_model"] == SERVED


# --- item 6: provider fields ----------------------------------------------------------------

def test_groq_x_groq_kept_in_both_modes(gateway: dict[str, Any]) -> None:
    recorded = sse_data(GROQ.read_bytes())
    _rid, chunks = _stream(gateway, {"model": "groq"})
    groq = [c["x_groq"] for c in chunks if "x_groq" in c]
    assert groq[0] == recorded[0]["x_groq"]
    assert groq[-1]["usage"] == recorded[-1]["x_groq"]["usage"]
    for c in chunks:  # tollway's own fields are tollway's
        assert c["id"] != recorded[0]["id"] and c["id"].startswith("chatcmpl-")
        assert c.get("usage") in (None, *[x.get("usage") for x in chunks if x.get("usage")])
    assert "queue_time" not in (chunks[-1].get("usage") or {})
    whole = _post(gateway, {"model": "groq"}).json()
    validate(whole, "CreateChatCompletionResponse")
    assert whole["x_groq"] == recorded[0]["x_groq"]
    assert whole["id"] != recorded[0]["id"]


def test_citations_and_filter_results_kept_in_both_modes(gateway: dict[str, Any]) -> None:
    _rid, chunks = _stream(gateway, {"model": "sonar"})
    text = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert all(c["citations"] == CITATIONS for c in text)
    assert all(c["choices"][0]["x_choice_note"] == "c" for c in text)
    assert all(c["choices"][0]["delta"]["x_delta_note"] == "d" for c in text)
    # the usage chunk's own fields join the finish chunk, which still carries the usage
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 9
    assert chunks[-1]["search_results"] == [{"url": CITATIONS[0]}]
    _rid, with_usage = _stream(gateway, {"model": "sonar",
                                         "stream_options": {"include_usage": True}})
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] == 9
    assert any(c.get("search_results") for c in with_usage)
    whole = _post(gateway, {"model": "sonar"}).json()
    assert whole["citations"] == CITATIONS
    assert whole["choices"][0]["x_choice_note"] == "c"
    assert whole["choices"][0]["message"]["x_delta_note"] == "dd"
    _rid, azure = _stream(gateway, {"model": "azure"})
    assert any(c.get("prompt_filter_results") for c in azure)
    assert any(ch.get("content_filter_results") == FILTERS for c in azure
               for ch in c["choices"])
    whole = _post(gateway, {"model": "azure"}).json()
    assert whole["choices"][0]["content_filter_results"] == FILTERS
    assert whole["prompt_filter_results"][0]["content_filter_results"] == FILTERS


def test_the_openai_sdk_reads_provider_fields(gateway: dict[str, Any]) -> None:
    sdk = openai.OpenAI(base_url=gateway["url"] + "/v1", api_key=gateway["key"], max_retries=0)
    chunks = [c for c in sdk.chat.completions.create(
        model="sonar", stream=True, messages=[{"role": "user", "content": "hi"}]) if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "See [1] and [2]."
    assert chunks[0].model_extra and chunks[0].model_extra["citations"] == CITATIONS
    whole = sdk.chat.completions.create(model="sonar",
                                        messages=[{"role": "user", "content": "hi"}])
    assert whole.model_extra and whole.model_extra["citations"] == CITATIONS


def test_a_rewriting_firewall_drops_choice_and_delta_fields(gateway: dict[str, Any]) -> None:
    _rid, chunks = _stream(gateway, {"model": "sonar", "firewall": "redact-pii"})
    assert any(c.get("citations") == CITATIONS for c in chunks)  # chunk-level: kept
    assert not any("x_choice_note" in ch or "x_delta_note" in ch["delta"]
                   for c in chunks for ch in c["choices"])
    whole = _post(gateway, {"model": "sonar", "firewall": "redact-pii"}).json()
    assert whole["citations"] == CITATIONS
    assert "x_choice_note" not in whole["choices"][0]
    assert "x_delta_note" not in whole["choices"][0]["message"]
