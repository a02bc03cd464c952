"""Raw hostile input at ``POST /v1/chat/completions``, with billing on (a real SQLite file).

Hypothesis sends raw bytes, broken JSON, wrong content types, huge and non-finite
numbers, deep nesting, invalid UTF-8 and wrongly typed fields spliced into an
otherwise valid request, streaming or not. Every answer must be below 500, an error
must be OpenAI's envelope, a stream must end with ``[DONE]`` or one error event; after
the run the ledger must pass ``tollway audit`` with no balance below zero.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.conftest import SIM_MODELS
from tests.support.servers import run_tollway
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.storage import open_storage

MODELS = ["sim-echo", "sim-lorem", "sim-reasoner", "sim-tool", "sim-length"]
PRICES = {"input_per_mtok": 3, "output_per_mtok": 15}
FIELDS = ["max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs", "temperature",
          "logit_bias", "tools", "messages", "model", "stream", "stream_options", "stop",
          "response_format", "metadata", "firewall", "platform_tools", "x_unknown"]  # fmt: skip


class Gateway:
    def __init__(self, client: httpx.Client, key: str, db: Path) -> None:
        self.client, self.key, self.db = client, key, db


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    db = Path(tempfile.mkdtemp()) / "chat-fuzz.db"
    config = {
        "database": f"sqlite:///{db}",
        "admin_key": "adm",
        "billing": {"enabled": True},
        "providers": {"sim": {"type": "simulated", "options": {"tokens_per_second": 0}}},
        "models": {name: {"deployments": [{**SIM_MODELS[name]["deployments"][0],
                                           "prices": PRICES}]} for name in MODELS},
    }  # fmt: skip
    admin = {"Authorization": "Bearer adm"}
    with run_tollway(config) as url, httpx.Client(base_url=url, timeout=60) as client:
        account = client.post("/admin/accounts", json={"name": "f", "credit_usd": "50"},
                              headers=admin).json()  # fmt: skip
        key = client.post(f"/admin/accounts/{account['id']}/keys", json={},
                          headers=admin).json()["key"]  # fmt: skip
        yield Gateway(client, key, db)


def _valid() -> dict[str, Any]:
    return {"model": "sim-echo", "messages": [{"role": "user", "content": "hello"}]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip
huge_numbers = st.sampled_from([
    "1e400", "-1e400", "1e308", "NaN", "Infinity", "-0", "0.0", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "-9223372036854775809",
    "123456789012345678901234567890", "1" * 400, "2147483648", "2147483647", "1.5",
])  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """(raw body, content type) from one of several families of hostile input."""
    kind = draw(st.sampled_from(["bytes", "broken", "number", "deep", "utf8", "typed", "valid"]))
    content_type = draw(st.sampled_from(
        ["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded",
         "", "application/json; charset=latin-1", "multipart/form-data; boundary=x"]))
    body = _valid()
    body["stream"] = draw(st.booleans())
    if kind == "bytes":
        return draw(st.binary(max_size=300)), content_type
    if kind == "broken":
        text = json.dumps(body).encode()
        cut = draw(st.integers(0, len(text)))
        junk = draw(st.binary(max_size=5))
        return text[:cut] + junk + text[cut + len(junk):], content_type
    if kind == "number":
        field = draw(st.sampled_from(FIELDS[:6] + ["temperature", "top_p", "x_unknown"]))
        number = draw(huge_numbers)
        return json.dumps(body)[:-1].encode() + f', "{field}": {number}}}'.encode(), content_type
    if kind == "deep":
        depth = draw(st.integers(100, 1200))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        field = draw(st.sampled_from(["x_unknown", "metadata", "response_format", "tools"]))
        nested = opener * depth + "1" + closer * depth
        return json.dumps(body)[:-1].encode() + f', "{field}": {nested}}}'.encode(), content_type
    if kind == "utf8":
        bad = draw(st.sampled_from([
            b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\\ud800", b"\\udfff\\ud800", b"\x00", b"\\u0000",
        ]))  # fmt: skip
        return (b'{"model": "sim-echo", "messages": [{"role": "user", "content": "a' + bad
                + b'b"}], "stream": ' + (b"true" if body["stream"] else b"false") + b"}",
                content_type)  # fmt: skip
    if kind == "typed":
        body[draw(st.sampled_from(FIELDS))] = draw(json_values)
        return json.dumps(body).encode(), content_type
    body["model"] = draw(st.sampled_from(MODELS))
    body["max_tokens"] = draw(st.integers(1, 64))
    body["n"] = draw(st.integers(1, 3))
    return json.dumps(body).encode(), content_type


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [e for e in response.text.split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events), events[:3]
        last = events[-1]
        assert last == "data: [DONE]" or '"error"' in last, last
    else:
        assert response.json()["object"] == "chat.completion"


@given(case=bodies())
@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_chat_input_never_gets_a_5xx(gateway: Gateway, case: tuple[bytes, str]) -> None:
    raw, content_type = case
    headers = {"Authorization": f"Bearer {gateway.key}"}
    if content_type:
        headers["Content-Type"] = content_type
    _check(gateway.client.post("/v1/chat/completions", content=raw, headers=headers))


def test_the_ledger_balances_after_the_fuzz(gateway: Gateway) -> None:
    async def check() -> tuple[list[Any], list[int]]:
        store = await open_storage(f"sqlite:///{gateway.db}")
        try:
            balances = [a.balance_micros for a in await store.list_accounts()]
            return await audit(store, BillingConfig()), balances
        finally:
            await store.close()

    violations, balances = asyncio.run(check())
    assert violations == [] and all(b >= 0 for b in balances)
