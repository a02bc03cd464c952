"""A Responses request is billed as a chat completion: the cost figures of
``response.completed`` equal the ledger entry, the trace says ``translated``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import openai

from tests.billing.test_e2e import BILLING, PRICES, books, setup_account
from tests.support.servers import serve_app
from tollway.assembly import create_app
from tollway.billing.plugin import BillingPlugin
from tollway.config import parse_settings
from tollway.responses import ResponsesPlugin
from tollway.tracing.plugin import TracingPlugin


@contextmanager
def billed(dsn: str) -> Iterator[str]:
    settings = parse_settings({"database": dsn, "providers": {"sim": {"type": "simulated"}},
                               "models": {"echo": {"deployments": [
                                   {"provider": "sim", "model": "echo", "prices": PRICES}]}}})
    app = create_app(settings, [BillingPlugin(BILLING), TracingPlugin(), ResponsesPlugin()])
    with serve_app(app) as url:
        yield url


def test_completed_usage_cost_equals_ledger_and_trace(dsn: str) -> None:
    account_id, key = setup_account(dsn, "5.00")
    with billed(dsn) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with c.responses.stream(model="echo", input="bill me") as stream:
            final = stream.get_final_response()
        usage: Any = final.usage
        assert usage is not None
        seen = usage.model_dump()
        request_id = "req_" + final.id.removeprefix("resp_")
        trace = None
        for _ in range(100):
            r = httpx.get(f"{url}/v1/traces/{request_id}",
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
            if r.status_code == 200:
                trace = r.json()
                break
            time.sleep(0.05)
        with __import__("pytest").raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="bad", max_retries=0).responses.create(
                model="echo", input="x")
    _, entries, violations = books(dsn, account_id)
    debit = entries[0].entry
    assert debit.kind == "debit" and violations == []
    assert (debit.prompt_tokens, debit.completion_tokens) == (
        seen["input_tokens"], seen["output_tokens"])
    assert Decimal(str(seen["total_cost_usd"])) * 1_000_000 == debit.total_cost_micros > 0
    assert trace is not None and trace["api"] == {"endpoint": "responses", "mode": "translated"}
