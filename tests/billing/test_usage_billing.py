"""Usage conventions and prompt caching, end to end: client usage = ledger debit = trace.

Real recorded streams are replayed by a local upstream; only their usage figures are
set to the shape under test (xAI's reasoning-outside-completion convention, Anthropic
prompt-cache reads and writes in both tiers). Tollway runs with every feature, the
official SDKs are the clients, and the books are read from the database.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
from aiohttp import web

from tests.billing.test_e2e import books, setup_account
from tests.support.servers import Upstream, run_tollway, send_sse

STREAMS = Path(__file__).resolve().parents[3] / "shared/conformance/streams"
FEE = Decimal("0.05")
GPT = {"input_per_mtok": "2.50", "output_per_mtok": "10"}
SONNET = {"input_per_mtok": "3", "cached_input_per_mtok": "0.30", "cache_write_per_mtok": "3.75",
          "cache_write_1h_per_mtok": "6", "output_per_mtok": "15"}  # fmt: skip
MESSAGES = [{"role": "user", "content": "Tell me about eclipses."}]


def _recording(path: Path, edit: Any) -> bytes:
    """The recorded SSE with each JSON ``data`` passed through ``edit`` (other bytes kept)."""
    out = []
    for block in path.read_bytes().split(b"\n\n"):
        lines = []
        for line in block.split(b"\n"):
            if line.startswith(b"data: {"):
                line = b"data: " + orjson.dumps(edit(orjson.loads(line[6:])))
            lines.append(line)
        out.append(b"\n".join(lines))
    return b"\n\n".join(out)


def _config(dsn: str, upstream: Upstream, provider: dict[str, Any], model: str,
            deployment: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "database": dsn,
        "billing": {"enabled": True, "platform_fee_fraction": str(FEE)},
        "providers": {"up": {**provider, "base_url": upstream.base_url}},
        "models": {"m": {"deployments": [{"provider": "up", "model": model, **deployment}]}},
    }


def _trace(url: str, key: str, request_id: str) -> dict[str, Any]:
    deadline = time.time() + 5
    while True:
        r = httpx.get(f"{url}/v1/traces/{request_id}", headers={"Authorization": f"Bearer {key}"})
        if r.status_code == 200 or time.time() > deadline:
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.05)


def _micros(usd: Any) -> int:
    return int(Decimal(str(usd)) * 1_000_000)


def _agree(seen: dict[str, Any], debit: Any, trace: dict[str, Any], base: int) -> None:
    """The client's figures, the ledger debit and the trace are one and the same."""
    fee = int((Decimal(base) * FEE).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    assert (debit.base_cost_micros, debit.platform_fee_micros) == (base, fee)
    assert debit.amount_micros == -(base + fee)
    for name, micros in (("base_cost_usd", base), ("platform_fee_usd", fee),
                         ("total_cost_usd", base + fee)):  # fmt: skip
        assert _micros(seen[name]) == micros, name
        assert _micros(trace["cost"][name]) == micros, name
    assert (debit.prompt_tokens, debit.completion_tokens) == (
        seen["prompt_tokens"], seen["completion_tokens"],
    )  # fmt: skip
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert trace["usage"][name] == seen[name], name


def _xai_usage(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("usage"):  # the recorded final usage chunk, in xAI's convention
        obj["usage"] = {
            "prompt_tokens": 1_000, "completion_tokens": 100, "total_tokens": 1_300,
            "completion_tokens_details": {"reasoning_tokens": 200},
        }  # fmt: skip
    return obj


def test_reasoning_outside_completion_is_billed_once_and_the_total_kept(dsn: str) -> None:
    payload = _recording(
        STREAMS / "openai/vercel-ai-openai-gpt41nano-text-usage-obfuscation.sse", _xai_usage
    )

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        return await send_sse(request, payload, upstream)

    account_id, key = setup_account(dsn, "10.00")
    with Upstream(handler) as up, run_tollway(
        _config(dsn, up, {"type": "openai"}, "grok-like", {"prices": GPT})
    ) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        usage = [c.usage for c in raw.parse() if c.usage is not None][-1]
        seen = usage.model_dump()
        trace = _trace(url, key, raw.headers["x-tollway-request-id"])
    _, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert seen["total_tokens"] == 1_300  # the provider's total, not 1000 + 100
    assert seen["completion_tokens"] == 100
    assert seen["completion_tokens_details"]["reasoning_tokens"] == 200
    # 1000 × 2.50 + (100 + 200) × 10 = 2500 + 3000 µ$: reasoning at the output price, once
    _agree(seen, debit, trace, base=5_500)
    assert debit.output_tokens == 300 and debit.reasoning_tokens == 200
    assert trace["usage"]["output_tokens"] == 300 and trace["usage"]["reasoning"] == "separate"
    assert violations == []


def test_a_deployment_states_its_convention(dsn: str) -> None:
    def no_total(obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("usage"):  # too little to tell from the numbers: the deployment says
            obj["usage"] = {"prompt_tokens": 1_000, "completion_tokens": 300,
                            "completion_tokens_details": {"reasoning_tokens": 200}}  # fmt: skip
        return obj

    payload = _recording(
        STREAMS / "openai/vercel-ai-openai-gpt41nano-text-usage-obfuscation.sse", no_total
    )

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        return await send_sse(request, payload, upstream)

    account_id, key = setup_account(dsn, "10.00")
    deployment = {"prices": GPT, "usage": {"reasoning": "separate"}}
    with Upstream(handler) as up, run_tollway(
        _config(dsn, up, {"type": "openai"}, "grok-like", deployment)
    ) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        seen = [c.usage for c in raw.parse() if c.usage is not None][-1].model_dump()
        trace = _trace(url, key, raw.headers["x-tollway-request-id"])
    _, entries, violations = books(dsn, account_id)
    assert seen["total_tokens"] == 1_500  # 1000 + 300 + 200: no total was reported
    _agree(seen, entries[0].entry, trace, base=2_500 + 5_000)
    assert violations == []


def _cached(obj: dict[str, Any]) -> dict[str, Any]:
    """Prompt-cache figures on the recorded message_start and message_delta."""
    usage = obj.get("usage") if obj.get("type") == "message_delta" else (
        (obj.get("message") or {}).get("usage") if obj.get("type") == "message_start" else None
    )
    if usage is not None:
        usage.update(cache_read_input_tokens=12_000, cache_creation_input_tokens=3_000)
        if "cache_creation" in usage:
            usage["cache_creation"] = {"ephemeral_5m_input_tokens": 2_000,
                                       "ephemeral_1h_input_tokens": 1_000}  # fmt: skip
    return obj


def test_anthropic_cache_reads_and_writes_are_priced_by_their_tier(dsn: str) -> None:
    payload = _recording(STREAMS / "anthropic/sdkpy-fable-stream-b-fallback.sse", _cached)

    async def handler(request: web.Request, upstream: Upstream) -> Any:
        return await send_sse(request, payload, upstream)

    account_id, key = setup_account(dsn, "10.00")
    with Upstream(handler) as up, run_tollway(
        _config(dsn, up, {"type": "anthropic", "api_key": "k"}, "claude", {"prices": SONNET})
    ) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        usage = [c.usage for c in raw.parse() if c.usage is not None][-1]
        seen = usage.model_dump()
        trace = _trace(url, key, raw.headers["x-tollway-request-id"])
    _, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert seen["prompt_tokens"] == 31 + 12_000 + 3_000 and seen["completion_tokens"] == 547
    details = seen["prompt_tokens_details"]
    assert (details["cached_tokens"], details["cache_write_tokens"],
            details["cache_write_1h_tokens"]) == (12_000, 3_000, 1_000)  # fmt: skip
    # 31 × 3 + 12000 × 0.30 + 2000 × 3.75 + 1000 × 6 + 547 × 15 (the table in test_pricing)
    _agree(seen, debit, trace, base=25_398)
    assert (debit.cached_tokens, debit.cache_write_tokens, debit.cache_write_1h_tokens) == (
        12_000, 3_000, 1_000,
    )  # fmt: skip
    assert (trace["usage"]["cache_write_tokens"], trace["usage"]["cache_write_1h_tokens"]) == (
        3_000, 1_000,
    )  # fmt: skip
    assert violations == []
