"""Gemini and Bedrock through the whole gateway with the openai SDK: fallback before the
first byte, billing with each provider's usage semantics (catalogue prices), firewalls,
platform tools across turns (thought signatures), traces."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.billing.test_e2e import setup_account
from tests.providers.recordings import (
    CONFORMANCE,
    bedrock_event_frame,
    bedrock_events,
    bedrock_whole,
    eventstream_frame,
    gemini_chunks,
    gemini_whole,
)
from tests.support.servers import Upstream, run_tollway

GEMINI_TEXT = (CONFORMANCE / "streams/gemini/mirascope-gemini25flash-text-thoughtstokens.sse")
CACHE_HIT = CONFORMANCE / "gemini-json/mirascope-gemini25flash-implicit-cache-hit.json"
BEDROCK_TEXT = CONFORMANCE / "streams/bedrock/pydantic-ai-converse-stream-text.eventstream"
ADMIN = "admin-e2e"
BEDROCK = {"type": "bedrock", "options": {"region": "us-east-1", "access_key_id": "AKID",
                                          "secret_access_key": "secret"}}


def frames(*objs: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\r\n\r\n" for o in objs)


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 9,
                              "totalTokenCount": 29}}


async def gemini_reply(request: web.Request, *objs: dict[str, Any]) -> web.StreamResponse:
    """Stream the objects, or send them folded into one body to a non-streaming call."""
    if request.path.endswith(":generateContent"):
        return await reply(request, json.dumps(gemini_whole(list(objs))).encode(),
                           "application/json")
    return await reply(request, frames(*objs))


async def reply(request: web.Request, body: bytes, content_type: str = "text/event-stream",
                status: int = 200) -> web.StreamResponse:
    if status != 200 or content_type == "application/json":
        return web.Response(status=status, body=body, content_type=content_type)
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    await resp.prepare(request)
    for i in range(0, len(body), 97):
        await resp.write(body[i:i + 97])
    await resp.write_eof()
    return resp


@contextmanager
def gateway(handler: Any, models: dict[str, Any], **extra: Any) -> Iterator[tuple[str, Upstream]]:
    with Upstream(handler) as upstream:
        providers = {"gem": {"type": "gemini", "base_url": upstream.base_url, "api_key": "AIza"},
                     "br": {**BEDROCK, "base_url": upstream.base_url}}
        with run_tollway({"providers": providers, "models": models, **extra}) as url:
            yield url, upstream


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


# --- routing and fallback ------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["gemini", "bedrock"])
def test_fallback_before_the_first_byte(failing: str) -> None:
    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        if "/models/" in request.path:  # Gemini
            if failing == "gemini":
                body = json.dumps({"error": {"code": 503, "message": "The model is overloaded.",
                                             "status": "UNAVAILABLE"}}).encode()
                return await reply(request, body, "application/json", 503)
            if request.path.endswith(":generateContent"):
                return await reply(request, json.dumps(gemini_whole(gemini_chunks(
                    GEMINI_TEXT.read_bytes()))).encode(), "application/json")
            return await reply(request, GEMINI_TEXT.read_bytes())
        if failing == "bedrock":
            frame = eventstream_frame({":message-type": "exception",
                                       ":exception-type": "throttlingException"},
                                      b'{"message":"Too many requests"}')
            return await reply(request, frame, "application/vnd.amazon.eventstream")
        if request.path.endswith("/converse"):
            return await reply(request, json.dumps(bedrock_whole(bedrock_events(
                BEDROCK_TEXT.read_bytes()))).encode(), "application/json")
        return await reply(request, BEDROCK_TEXT.read_bytes(), "application/vnd.amazon.eventstream")

    first, second = ("gem", "br") if failing == "gemini" else ("br", "gem")
    models = {"mix": {"deployments": [{"provider": first, "model": "gemini-2.5-flash"},
                                      {"provider": second, "model": "gemini-2.5-flash"}]}}
    with gateway(handler, models) as (url, _):
        raw = client(url).chat.completions.with_raw_response.create(
            model="mix", messages=[{"role": "user", "content": "hi"}])
        answer = raw.parse().choices[0].message.content or ""
        assert raw.headers["X-Tollway-Served-By"] == f"{second}/gemini-2.5-flash"
        assert raw.headers["X-Tollway-Fallback-From"] == f"mix/{first}/gemini-2.5-flash"
        streamed = "".join(c.choices[0].delta.content or "" for c in client(url).chat.completions
                           .create(model="mix", stream=True,
                                   messages=[{"role": "user", "content": "hi"}]) if c.choices)
    assert answer == streamed
    assert answer.startswith("To find the sum" if failing == "bedrock" else "The capital of")


# --- billing with the provider's usage semantics, catalogue prices, traces ------------------


def usd_micros(x: Decimal) -> int:
    return int((x * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_gemini_thinking_and_cache_billed_at_catalogue_prices(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/t.db"

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        if request.path.endswith(":streamGenerateContent"):
            return await reply(request, GEMINI_TEXT.read_bytes())
        return await reply(request, CACHE_HIT.read_bytes(), "application/json")

    models = {"flash": {"deployments": [
        {"provider": "gem", "model": "gemini-2.5-flash", "prices": "catalog"}]}}
    account_id, key = setup_account(dsn, "1.00")
    with gateway(handler, models, database=dsn, admin_key=ADMIN,
                 billing={"enabled": True}) as (url, _):
        chunks = list(client(url, key).chat.completions.create(
            model="flash", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "4200 + 42?"}]))
        usage = chunks[-1].usage
        assert usage is not None
        whole = client(url, key).chat.completions.with_raw_response.create(
            model="flash", messages=[{"role": "user", "content": "again"}])
        cached_usage = whole.parse().usage
        request_id = whole.headers["X-Request-Id"]
        trace = _trace(url, request_id)
    # Gemini reports thinking outside candidatesTokenCount: it is billed as output, once.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (13, 138, 151)
    assert usage.completion_tokens_details.reasoning_tokens == 75
    stream_base = Decimal(13) * Decimal("0.30") + Decimal(138) * Decimal("2.50")
    assert Decimal(str(usage.model_dump()["base_cost_usd"])) == Decimal(
        usd_micros(stream_base / 1_000_000)) / 1_000_000
    # implicit cache hit: 3,055 of 3,797 prompt tokens at the cached price
    assert cached_usage is not None and cached_usage.prompt_tokens_details.cached_tokens == 3055
    cache_base = (Decimal(3797 - 3055) * Decimal("0.30") + Decimal(3055) * Decimal("0.03")
                  + Decimal(656 + 1549) * Decimal("2.50")) / 1_000_000
    assert Decimal(str(cached_usage.model_dump()["base_cost_usd"])) == Decimal(
        usd_micros(cache_base)) / 1_000_000
    assert trace["served_model"] == "gemini-2.5-flash" and trace["provider"] == "gem"
    assert trace["usage"]["cached_tokens"] == 3055 and trace["usage"]["reasoning_tokens"] == 1549
    assert Decimal(trace["cost"]["base_cost_usd"]) == Decimal(usd_micros(cache_base)) / 10**6
    from tests.billing.test_e2e import books

    _, entries, violations = books(dsn, account_id)
    debits = [e.entry for e in entries if e.entry.kind == "debit"]
    assert sorted(d.base_cost_micros for d in debits) == sorted(
        [usd_micros(stream_base / 1_000_000), usd_micros(cache_base)])
    assert violations == []


def _trace(url: str, request_id: str) -> dict[str, Any]:
    deadline = time.time() + 10
    while True:
        r = httpx.get(f"{url}/admin/traces/{request_id}",
                      headers={"Authorization": f"Bearer {ADMIN}"})
        if r.status_code == 200 or time.time() > deadline:
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_bedrock_usage_reaches_the_client() -> None:
    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        return await reply(request, BEDROCK_TEXT.read_bytes(), "application/vnd.amazon.eventstream")

    models = {"nova": {"deployments": [{"provider": "br", "model": "amazon.nova-pro-v1:0"}]}}
    with gateway(handler, models) as (url, upstream):
        chunks = list(client(url).chat.completions.create(
            model="nova", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "capital?"}]))
        assert upstream.headers[-1]["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (13, 82)
    assert all(c.model == "amazon.nova-pro-v1:0" for c in chunks)


# --- firewalls ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["gem", "br"])
def test_firewall_redacts_across_chunks_in_both_modes(provider: str) -> None:
    parts = ["Write to jane.do", "e@exam", "ple.com today."]

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        if "/models/" in request.path:
            objs = [text_chunk(p, "STOP" if i == len(parts) - 1 else None)
                    for i, p in enumerate(parts)]
            if request.path.endswith(":generateContent"):
                objs = [text_chunk("".join(parts), "STOP")]
            return await gemini_reply(request, *objs)
        if request.path.endswith("/converse"):
            return await reply(request, json.dumps({
                "output": {"message": {"role": "assistant", "content": [{"text": "".join(parts)}]}},
                "stopReason": "end_turn", "usage": {"inputTokens": 5, "outputTokens": 9,
                                                    "totalTokens": 14}}).encode(),
                "application/json")
        wire = b"".join([bedrock_event_frame("messageStart", {"role": "assistant"}),
                         *(bedrock_event_frame("contentBlockDelta", {
                             "contentBlockIndex": 0, "delta": {"text": p}}) for p in parts),
                         bedrock_event_frame("messageStop", {"stopReason": "end_turn"})])
        return await reply(request, wire, "application/vnd.amazon.eventstream")

    models = {"m": {"deployments": [{"provider": provider, "model": "gemini-2.5-flash"}]}}
    with gateway(handler, models, defaults={"firewall": "redact-pii"}) as (url, _):
        c = client(url)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="m", stream=True, messages=[{"role": "user", "content": "x"}]) if ch.choices)
        whole = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert streamed == whole.choices[0].message.content == "Write to [REDACTED:email] today."


# --- platform tools across turns -------------------------------------------------------------


def test_platform_tool_loop_on_gemini_returns_the_thought_signature() -> None:
    signature = "CikB0e2Kbw5tJ9dwYB9m1I9W28H1Pvbhg7iFnlQJMZT9ndxhy/OJBT3V9Q=="
    calls: list[dict[str, Any]] = []

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        body = upstream.requests[-1]
        calls.append(body)
        if len(calls) % 2 == 1:  # first round: call the platform tool
            return await gemini_reply(request, {
                "candidates": [{"content": {"role": "model", "parts": [{
                    "functionCall": {"name": "calculator", "args": {"expression": "6*7"}},
                    "thoughtSignature": signature}]}, "finishReason": "STOP", "index": 0}],
                "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 5,
                                  "thoughtsTokenCount": 12, "totalTokenCount": 47}})
        return await gemini_reply(request, text_chunk("The answer is 42.", "STOP"))

    models = {"m": {"deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]}}
    with gateway(handler, models, tools={"calculator": {}}) as (url, _):
        whole = client(url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "6 times 7?"}],
            extra_body={"platform_tools": ["calculator"]})
        streamed = "".join(c.choices[0].delta.content or "" for c in client(url).chat.completions
                           .create(model="m", stream=True, extra_body={"platform_tools": [
                               "calculator"]}, messages=[{"role": "user", "content": "6 times 7?"}])
                           if c.choices)
    assert streamed == whole.choices[0].message.content
    assert len(calls) == 4 and calls[3]["contents"] == calls[1]["contents"]
    assert whole.choices[0].message.content is not None
    assert whole.choices[0].message.content.endswith("The answer is 42.")
    assert whole.choices[0].finish_reason == "stop"
    second = calls[1]
    assert second["tools"][0]["functionDeclarations"][0]["name"] == "calculator"
    model_turn, result_turn = second["contents"][-2], second["contents"][-1]
    assert model_turn["parts"] == [{"functionCall": {"name": "calculator",
                                                     "args": {"expression": "6*7"}},
                                    "thoughtSignature": signature}]
    response = result_turn["parts"][0]["functionResponse"]
    assert response["name"] == "calculator" and "42" in json.dumps(response["response"])
    usage = whole.usage
    assert usage is not None and usage.prompt_tokens == 30 + 20  # both rounds summed


def test_credentials_echoed_by_an_upstream_are_redacted() -> None:
    """The secret options of the new providers are among the secrets tollway redacts."""
    secret = BEDROCK["options"]["secret_access_key"] + "-long-enough-to-be-a-secret"

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        body = json.dumps({"message": f"Bad request signed with {secret}"}).encode()
        return web.Response(status=400, body=body, content_type="application/json",
                            headers={"x-amzn-ErrorType": "ValidationException"})

    models = {"m": {"deployments": [{"provider": "br", "model": "amazon.nova-pro-v1:0"}]}}
    with Upstream(handler) as upstream:
        providers = {"br": {**BEDROCK, "base_url": upstream.base_url,
                            "options": {**BEDROCK["options"], "secret_access_key": secret}}}
        with run_tollway({"providers": providers, "models": models}) as url:
            r = httpx.post(url + "/v1/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "Bad request signed with" in r.text
    assert secret not in r.text and secret[:20] not in r.text


def test_bedrock_cache_reads_and_writes_billed_at_their_prices(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/t.db"
    usage = {"inputTokens": 20, "outputTokens": 7, "cacheReadInputTokens": 1000,
             "cacheWriteInputTokens": 400, "totalTokens": 1427}
    wire = b"".join([
        bedrock_event_frame("messageStart", {"role": "assistant"}),
        bedrock_event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                  "delta": {"text": "Cached hello"}}),
        bedrock_event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        bedrock_event_frame("messageStop", {"stopReason": "end_turn"}),
        bedrock_event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 5}})])

    async def handler(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        return await reply(request, wire, "application/vnd.amazon.eventstream")

    prices = {"input_per_mtok": "3", "cached_input_per_mtok": "0.30",
              "cache_write_per_mtok": "3.75", "cache_write_1h_per_mtok": "6",
              "output_per_mtok": "15"}
    models = {"claude": {"deployments": [
        {"provider": "br", "model": "anthropic.claude-sonnet-4-20250514-v1:0",
         "prices": prices}]}}
    _, key = setup_account(dsn, "1.00")
    with gateway(handler, models, database=dsn, billing={"enabled": True}) as (url, _):
        chunks = list(client(url, key).chat.completions.create(
            model="claude", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hi"}]))
    got = chunks[-1].usage
    assert got is not None and (got.prompt_tokens, got.completion_tokens) == (1420, 7)
    assert got.prompt_tokens_details.cached_tokens == 1000 and got.total_tokens == 1427
    base = (Decimal(20) * 3 + Decimal(1000) * Decimal("0.30") + Decimal(400) * Decimal("3.75")
            + Decimal(7) * 15) / 1_000_000
    assert Decimal(str(got.model_dump()["base_cost_usd"])) == Decimal(usd_micros(base)) / 10**6
