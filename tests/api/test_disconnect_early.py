"""A client that goes away before the first token, or while a non-streamed answer is
being made, is noticed at once (issue 12, item 6): the upstream connection is closed,
the request is billed for what the upstream received and generated (marked partial)
and traced as a disconnect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.books import ADMIN, PRICES, admin_trace, books, new_account, raw_request
from tests.support.servers import Upstream, run_tollway, serve_app
from tollway.assembly import create_app, default_plugins
from tollway.config import parse_settings
from tollway.context import RequestContext
from tollway.plugins import Host, Phase


async def _thinks_forever(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    """Never answers: a streamed request gets its headers, a whole one nothing."""
    body = await request.json()
    if body.get("stream"):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[dict[str, Any]]:
    dsn = f"sqlite:///{tmp_path / 'tollway.db'}"
    account_id, key = new_account(dsn, "acme", "5.00")
    with Upstream(_thinks_forever) as upstream:
        config = {
            "database": dsn, "admin_key": ADMIN, "billing": {"enabled": True},
            "providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
            "models": {"m": {"deployments": [{"provider": "up", "model": "u",
                                              "prices": PRICES}]}},
        }
        with run_tollway(config) as url:
            yield {"url": url, "dsn": dsn, "account_id": account_id, "key": key,
                   "upstream": upstream}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_leaving_before_the_first_token_closes_the_upstream(
    setup: dict[str, Any], stream: bool
) -> None:
    upstream: Upstream = setup["upstream"]
    body = json.dumps({"model": "m", "stream": stream,
                       "messages": [{"role": "user", "content": "think hard"}]}).encode()
    client_id = f"leaves-early-{stream}"
    sock = raw_request(setup["url"], f"POST /v1/chat/completions HTTP/1.1\nHost: x\n"
                       f"Authorization: Bearer {setup['key']}\nX-Request-Id: {client_id}\n"
                       f"Content-Type: application/json\nContent-Length: {len(body)}\n", body)
    deadline = time.monotonic() + 5
    while not upstream.requests:  # the upstream is working on it
        assert time.monotonic() < deadline, "the upstream never got the request"
        time.sleep(0.01)
    sock.close()
    left = time.monotonic()
    assert upstream.closed_early.wait(3), "the upstream connection was kept open"
    assert time.monotonic() - left < 1.0

    t = admin_trace(setup["url"], client_id)
    assert t["status"] == 499 and t["client_disconnected"] is True and t["partial"] is True
    assert t["error"]["code"] == "client_disconnected"
    assert t["output_delivered"] == "none"
    assert [(a["deployment"], a["outcome"]) for a in t["attempts"]] == [("up/u", "abandoned")]
    assert t["deployment"] == "up/u"

    deadline = time.monotonic() + 5
    while True:
        account, entries, violations = books(setup["dsn"], setup["account_id"])
        if entries[0].entry.kind == "debit" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    debit = entries[0].entry
    assert debit.kind == "debit" and debit.partial and debit.request_id == t["id"]
    assert debit.prompt_tokens > 0 and debit.completion_tokens == 0  # the prompt it received
    assert debit.total_cost_micros > 0 and debit.deployment == "up/u"
    assert account.reserved_micros == 0 and violations == []


def test_leaving_during_admission_reaches_no_upstream(tmp_path: Path) -> None:
    """Admission is not cut in the middle (a reservation must be recorded to be released);
    a client gone by its end stops the request before any upstream call, at no cost."""
    dsn = f"sqlite:///{tmp_path / 'tollway.db'}"
    account_id, key = new_account(dsn, "acme", "5.00")
    finished: list[bool] = []

    async def slow_admission(ctx: RequestContext) -> None:  # a plugin's admission step
        await asyncio.sleep(0.5)
        finished.append(ctx.reservation is not None)

    class SlowAdmission:
        name = "slow-admission"

        def register(self, host: Host) -> None:
            host.admitter(slow_admission, Phase.OBSERVE)  # after billing's (Phase.MONEY)

    with Upstream(_thinks_forever) as upstream:
        app = create_app(parse_settings({
            "database": dsn, "admin_key": ADMIN, "billing": {"enabled": True},
            "providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
            "models": {"m": {"deployments": [{"provider": "up", "model": "u",
                                              "prices": PRICES}]}},
        }), [*default_plugins(), SlowAdmission()])
        with serve_app(app) as url:
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
            sock = raw_request(url, f"POST /v1/chat/completions HTTP/1.1\nHost: x\n"
                               f"Authorization: Bearer {key}\nX-Request-Id: admitted-1\n"
                               f"Content-Length: {len(body)}\n", body.encode())
            time.sleep(0.2)
            sock.close()
            t = admin_trace(url, "admitted-1")
        assert upstream.requests == []
    assert finished == [True]
    assert t["status"] == 499 and t["client_disconnected"] is True
    assert t["attempts"] == [] and t["output_delivered"] == "none"
    account, entries, violations = books(dsn, account_id)
    assert entries[0].entry.kind == "debit" and entries[0].entry.total_cost_micros == 0
    assert account.reserved_micros == 0 and violations == []
