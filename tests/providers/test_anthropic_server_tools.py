"""Anthropic server tools and unknown blocks through a running tollway (issue 11 item 8).

A web search answer (``server_tool_use``, ``web_search_tool_result``, a text block
with ``citations_delta``) plus a made-up block type and a made-up delta type: the
stream never fails, the text is intact, search results reach the client as
``delta.web_search_results`` and the citations as OpenAI ``url_citation``
annotations over the cited text, in both modes; the trace lists the provider blocks
(metadata only: the search query is digested, like platform tool arguments).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.books import ADMIN, admin_trace
from tests.support.schemas import validate
from tests.support.servers import Upstream, run_tollway

QUERY = {"query": "weather in Paris today"}
RESULTS = [
    {"type": "web_search_result", "url": "https://meteo.example/paris", "title": "Paris weather",
     "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y2MS",
     "page_age": "November 26, 2026"},
    {"type": "web_search_result", "url": "https://news.example/p", "title": "News",
     "encrypted_content": "Eo8BCioIARgBIiQ", "page_age": None},
]
CITATION = {"type": "web_search_result_location", "url": "https://meteo.example/paris",
            "title": "Paris weather", "encrypted_index": "Eo8BCioIAhgBIiQ",
            "cited_text": "Sunny, 18 degrees."}
BEFORE = "Let me look that up. "
CITED = "It is sunny in Paris, 18 °C."


def _events() -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {
            "id": "msg_ws", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5", "stop_reason": None,
            "usage": {"input_tokens": 30, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": BEFORE}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": json.dumps(QUERY)}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "web_search_tool_result", "tool_use_id": "srvtoolu_01",
            "content": RESULTS}},
        {"type": "content_block_stop", "index": 2},
        {"type": "content_block_start", "index": 3,
         "content_block": {"type": "hologram", "shimmer": [1, 2]}},  # made up
        {"type": "content_block_delta", "index": 3,
         "delta": {"type": "shimmer_delta", "shimmer": 3}},  # made up
        {"type": "content_block_delta", "index": 3, "delta": "not even an object"},
        {"type": "content_block_stop", "index": 3},
        {"type": "content_block_start", "index": 4, "content_block": {
            "type": "text", "text": "", "citations": []}},
        {"type": "content_block_delta", "index": 4,
         "delta": {"type": "citations_delta", "citation": CITATION}},
        {"type": "content_block_delta", "index": 4,
         "delta": {"type": "text_delta", "text": CITED}},
        {"type": "content_block_delta", "index": 4,
         "delta": {"type": "mystery_delta", "payload": {"x": 1}}},  # made up
        {"type": "content_block_stop", "index": 4},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 40, "server_tool_use": {"web_search_requests": 1}}},
        {"type": "message_stop"},
    ]


def _whole() -> dict[str, Any]:
    return {"id": "msg_ws", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "text", "text": BEFORE},
                {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search",
                 "input": QUERY},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01",
                 "content": RESULTS},
                {"type": "hologram", "shimmer": [1, 2]},
                {"type": "text", "text": CITED, "citations": [CITATION]},
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 30, "output_tokens": 40}}


async def _answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    if not upstream.requests[-1].get("stream"):
        return web.json_response(_whole())
    raw = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in _events())
    return web.Response(body=raw, content_type="text/event-stream")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = f"sqlite:///{tmp_path_factory.mktemp('server-tools') / 'tollway.db'}"
    with Upstream(_answer) as upstream, run_tollway({
        "database": dsn, "admin_key": ADMIN,
        "providers": {"a": {"type": "anthropic", "base_url": upstream.base_url.removesuffix(
            "/v1"), "api_key": "sk-ant"}},
        "models": {"claude": {"deployments": [{"provider": "a", "model": "claude-x"}]}},
    }) as base:
        yield base


EXPECTED_ANNOTATION = {"type": "url_citation", "url_citation": {
    "url": CITATION["url"], "title": CITATION["title"],
    "start_index": len(BEFORE), "end_index": len(BEFORE) + len(CITED)}}
EXPECTED_RESULTS = [{k: r[k] for k in ("url", "title", "page_age")} for r in RESULTS]


def _check_trace(url: str, request_id: str) -> None:
    blocks = admin_trace(url, request_id)["provider_blocks"]
    assert [b["type"] for b in blocks] == ["server_tool_use", "web_search_tool_result",
                                           "hologram"]
    assert blocks[0]["block"] == {
        "id": "srvtoolu_01", "name": "web_search",
        "input_sha256": hashlib.sha256(
            json.dumps(QUERY, separators=(",", ":"), sort_keys=True).encode()).hexdigest()}
    assert blocks[1]["block"] == {"tool_use_id": "srvtoolu_01", "results": 2}
    assert blocks[2]["block"] == {"fields": ["shimmer", "type"]}
    assert "weather" not in json.dumps(blocks)  # the query itself is not kept


def test_streamed_web_search_is_surfaced_and_traced(url: str) -> None:
    r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": "claude", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    chunks = [json.loads(e[6:]) for e in r.text.split("\n\n") if e.startswith("data: {")]
    assert r.text.endswith("data: [DONE]\n\n")
    for c in chunks:
        validate(c, "CreateChatCompletionStreamResponse")
    deltas = [ch["delta"] for c in chunks for ch in c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == BEFORE + CITED
    assert [d["web_search_results"] for d in deltas if "web_search_results" in d] \
        == [EXPECTED_RESULTS]
    assert [a for d in deltas for a in d.get("annotations", [])] == [EXPECTED_ANNOTATION]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    _check_trace(url, r.headers["x-tollway-request-id"])


def test_whole_web_search_is_surfaced_and_traced(url: str) -> None:
    r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": "claude", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "CreateChatCompletionResponse")
    message = body["choices"][0]["message"]
    assert message["content"] == BEFORE + CITED
    assert message["web_search_results"] == EXPECTED_RESULTS
    assert message["annotations"] == [EXPECTED_ANNOTATION]
    _check_trace(url, r.headers["x-tollway-request-id"])
