"""The feature hooks on a real Gateway object (no HTTP)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tollway.context import RequestContext
from tollway.firewalls import FirewallBlocked, UnknownFirewall
from tollway.firewalls.plugin import FirewallsPlugin
from tollway.plugins.hooks import Hooks
from tollway.providers.base import ChatRequest


def make(firewall: str | None, text: str) -> tuple[Any, RequestContext]:
    hooks = Hooks(SimpleNamespace())  # type: ignore[arg-type]
    FirewallsPlugin(default_policy=lambda ctx: "monitor").register(hooks)
    app = SimpleNamespace(gateway=SimpleNamespace(hooks=hooks.seal()))
    ext = {"firewall": firewall} if firewall else {}
    req = ChatRequest(body={}, model="m", stream=True, include_usage=False,
                      messages=[{"role": "user", "content": text}], extensions=ext)
    ctx = RequestContext("r", request=req)
    return app, ctx


def test_redact_hook_rewrites_messages_and_adds_stage() -> None:
    app, ctx = make("redact-pii", "mail bob@example.com")
    asyncio.run(app.gateway.hooks.request_hooks[0](ctx))
    assert ctx.request.messages[0]["content"] == "mail [REDACTED:email]"
    assert ctx.firewall_verdicts[0]["where"] == "request"
    assert app.gateway.hooks.stages[0](ctx) is not None


def test_block_records_verdicts_then_raises() -> None:
    app, ctx = make("strict-block", "key AKIAIOSFODNN7EXAMPLE")
    with pytest.raises(FirewallBlocked):
        asyncio.run(app.gateway.hooks.request_hooks[0](ctx))
    assert ctx.firewall_verdicts[0]["detector"] == "aws_access_key"


def test_default_and_unknown() -> None:
    app, ctx = make(None, "mail bob@example.com")
    asyncio.run(app.gateway.hooks.request_hooks[0](ctx))
    assert ctx.firewall_verdicts[0]["action"] == "monitor"
    app, ctx = make("nope", "x")
    with pytest.raises(UnknownFirewall, match="'nope'"):
        asyncio.run(app.gateway.hooks.request_hooks[0](ctx))


def test_redact_hook_rewrites_body_messages_and_tools_never_in_place() -> None:
    app, ctx = make("redact-pii", "mail bob@example.com!")
    assert ctx.request is not None
    tools = [{"type": "function", "function": {"name": "f", "description": "to amy@example.org!"}}]
    messages = ctx.request.messages
    ctx.request.tools = tools
    ctx.request.body = {"model": "m", "messages": messages, "tools": tools,
                        "prediction": {"type": "content", "content": "cc ann@example.com"}}
    asyncio.run(app.gateway.hooks.request_hooks[0](ctx))
    req = ctx.request
    assert req.messages[0]["content"] == "mail [REDACTED:email]!"
    assert req.tools is not None
    assert req.tools[0]["function"]["description"] == "to [REDACTED:email]!"
    assert req.body["messages"] is req.messages and req.body["tools"] is req.tools
    assert req.body["prediction"]["content"] == "cc [REDACTED:email]"
    assert req.body["model"] == "m"
    assert messages[0]["content"] == "mail bob@example.com!"  # the client's objects untouched
    assert tools[0]["function"]["description"] == "to amy@example.org!"


def test_a_conversations_requests_go_on_from_the_same_accounts_reading() -> None:
    """The request hook scopes the reading it goes on from by the request's account: the
    next turn of one account's conversation goes on, another account's same text does not."""
    def turn(account: str | None, messages: list[dict[str, Any]]) -> tuple[Any, RequestContext]:
        app, ctx = make("monitor", "")
        assert ctx.request is not None
        ctx.request.messages = messages
        ctx.account_id = account
        return app, ctx

    history = [{"role": "user", "content": "hello, mail bob@example.com"},
               {"role": "assistant", "content": "done"}]
    tools = [{"type": "function", "function": {"name": "f", "description": "a tool"}}]
    app, ctx = turn("acct_1", history[:1])
    assert ctx.request is not None
    ctx.request.tools = tools
    hooks = app.gateway.hooks
    policy = hooks.request_hooks[0].__self__.firewalls.get("monitor")
    asyncio.run(hooks.request_hooks[0](ctx))
    for account, resumed in (("acct_2", 0), ("acct_1", 1)):
        before = policy.checkpoints.resumed
        _, ctx = turn(account, [*history, {"role": "user", "content": "thanks"}])
        assert ctx.request is not None
        ctx.request.tools = tools
        asyncio.run(hooks.request_hooks[0](ctx))
        assert ctx.firewall_verdicts[0]["detector"] == "email"
        assert policy.checkpoints.resumed == before + resumed
