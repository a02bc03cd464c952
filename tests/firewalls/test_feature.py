"""The feature hooks on a real Gateway object (no HTTP)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tollway.context import RequestContext
from tollway.firewalls import FirewallBlocked, UnknownFirewall
from tollway.firewalls.feature import install
from tollway.providers.base import ChatRequest


def make(firewall: str | None, text: str) -> tuple[Any, RequestContext]:
    app = SimpleNamespace(settings=SimpleNamespace(),
                          gateway=SimpleNamespace(request_hooks=[], stage_factories=[]))
    install(app, default_policy=lambda ctx: "monitor")
    ext = {"firewall": firewall} if firewall else {}
    req = ChatRequest(body={}, model="m", stream=True, include_usage=False,
                      messages=[{"role": "user", "content": text}], extensions=ext)
    ctx = RequestContext("r", request=req)
    return app, ctx


def test_redact_hook_rewrites_messages_and_adds_stage() -> None:
    app, ctx = make("redact-pii", "mail bob@example.com")
    asyncio.run(app.gateway.request_hooks[0](ctx))
    assert ctx.request.messages[0]["content"] == "mail [REDACTED:email]"
    assert ctx.firewall_verdicts[0]["where"] == "request"
    assert app.gateway.stage_factories[0](ctx) is not None


def test_block_records_verdicts_then_raises() -> None:
    app, ctx = make("strict-block", "key AKIAIOSFODNN7EXAMPLE")
    with pytest.raises(FirewallBlocked):
        asyncio.run(app.gateway.request_hooks[0](ctx))
    assert ctx.firewall_verdicts[0]["detector"] == "aws_access_key"


def test_default_and_unknown() -> None:
    app, ctx = make(None, "mail bob@example.com")
    asyncio.run(app.gateway.request_hooks[0](ctx))
    assert ctx.firewall_verdicts[0]["action"] == "monitor"
    app, ctx = make("nope", "x")
    with pytest.raises(UnknownFirewall, match="'nope'"):
        asyncio.run(app.gateway.request_hooks[0](ctx))
