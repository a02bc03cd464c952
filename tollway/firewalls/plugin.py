"""The firewalls plugin: the request side (``Phase.FILTER``), the response stage, tool results.

Every policy is compiled once (a preset the configuration does not name, when a
request first does, in a thread). Per request the policy is the ``firewall`` extension
field, else the key's, the account's or the global default (``Settings.default_for``);
its request side applies to everything the upstream will receive, before admission,
and its response stage to the answer. Platform tools' results pass through the same
policy (``tool_result_inspector``) before the model and the client see them. A
non-streaming response reports the policy and its verdicts. An unknown name is a 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tollway.context import RequestContext
from tollway.firewalls.policy import CompiledPolicy, FirewallSet
from tollway.firewalls.request import (
    FirewallBlocked,
    apply_chat_request,
    apply_request,
    merge_verdicts,
)
from tollway.firewalls.stage import response_firewall
from tollway.pipeline.compose import Stage
from tollway.plugins.contract import Host, Phase

__all__ = ["FirewallsPlugin", "policy_for"]

DefaultPolicy = Callable[[RequestContext], str | None]


def policy_for(
    firewalls: FirewallSet, ctx: RequestContext, default_policy: DefaultPolicy | None = None
) -> CompiledPolicy | None:
    """The policy this request uses: its ``firewall`` field, else the default, else none."""
    name = policy_name(ctx, default_policy)
    return firewalls.get(name) if name else None


def policy_name(ctx: RequestContext, default_policy: DefaultPolicy | None = None) -> str | None:
    """The name of the policy this request uses, or None."""
    name = ctx.request.extensions.get("firewall") if ctx.request is not None else None
    if not name and default_policy is not None:
        name = default_policy(ctx)
    return str(name) if name else None


class Firewalls:
    """The compiled policies and the hooks that apply them."""

    def __init__(self, firewalls: FirewallSet, default_policy: DefaultPolicy | None) -> None:
        self.firewalls = firewalls
        self.default_policy = default_policy
        self._compiling: dict[str, asyncio.Future[CompiledPolicy]] = {}

    def policy(self, ctx: RequestContext) -> CompiledPolicy | None:
        return policy_for(self.firewalls, ctx, self.default_policy)

    async def request_side(self, ctx: RequestContext) -> None:
        """Request hook: apply the policy to what the upstream will receive (a preset
        used for the first time is compiled in a thread, not on the event loop)."""
        name = policy_name(ctx, self.default_policy)
        if not name:
            return
        firewalls = self.firewalls
        policy = firewalls.get(name) if firewalls.ready(name) else await self._compiled(name)
        if ctx.request is None:
            return
        ctx.request.extensions["firewall"] = policy.name  # reported in the response
        try:
            # scoped by account: one tenant's request never goes on from another's reading
            verdicts = apply_chat_request(policy, ctx.request, ctx.account_id or "")
        except FirewallBlocked as exc:
            merge_verdicts(ctx.firewall_verdicts, exc.verdicts)
            raise
        merge_verdicts(ctx.firewall_verdicts, verdicts)

    async def _compiled(self, name: str) -> CompiledPolicy:
        """A preset's first use: one compile in a thread, which every request that names it
        meanwhile awaits (not a thread each), and which a request's cancellation leaves
        running for the others."""
        job = self._compiling.get(name)
        if job is None:
            job = self._compiling[name] = asyncio.ensure_future(
                asyncio.to_thread(self.firewalls.get, name)
            )
            job.add_done_callback(lambda done: self._finished(name, done))
        return await asyncio.shield(job)

    def _finished(self, name: str, job: asyncio.Future[CompiledPolicy]) -> None:
        self._compiling.pop(name, None)
        if not job.cancelled():
            job.exception()  # retrieved: raised to whoever awaited it, not logged as lost

    def response_side(self, ctx: RequestContext) -> Stage | None:
        """Stage factory: the policy's response stage, if it filters responses."""
        policy = self.policy(ctx)
        return None if policy is None or not policy.on_response else response_firewall(policy)

    async def tool_result(self, name: str, text: str, ctx: RequestContext) -> str:
        """The request's firewall applies to tool results before model and client see them."""
        policy = self.policy(ctx)
        if policy is None:
            return text
        try:
            messages, verdicts = apply_request(policy, [{"role": "tool", "content": text}])
        except FirewallBlocked as exc:
            merge_verdicts(ctx.firewall_verdicts, exc.verdicts)
            raise
        merge_verdicts(ctx.firewall_verdicts, verdicts)
        return str(messages[0]["content"])

    @staticmethod
    def response_fields(ctx: RequestContext) -> dict[str, Any] | None:
        """``firewall``: the policy and its verdicts, on a whole response."""
        policy = ctx.request.extensions.get("firewall") if ctx.request is not None else None
        if not policy:
            return None
        return {"firewall": {"policy": policy, "verdicts": ctx.firewall_verdicts}}


class FirewallsPlugin:
    """Firewalls as a plugin; ``default_policy`` overrides the settings' defaults."""

    name = "firewalls"

    def __init__(self, default_policy: DefaultPolicy | None = None) -> None:
        self.default_policy = default_policy
        self.feature: Firewalls | None = None  # once registered

    def register(self, host: Host) -> None:
        settings = host.settings
        default_policy = self.default_policy

        if default_policy is None and hasattr(settings, "default_for"):

            def default_policy(ctx: RequestContext) -> str | None:
                return settings.default_for(  # type: ignore[no-any-return]
                    "firewall", key_id=ctx.key_id, account_id=ctx.account_id,
                    account_name=getattr(ctx.account, "account_name", None),
                )  # fmt: skip

        compiled = FirewallSet.from_config(
            getattr(settings, "firewalls", None) or {}, _configured_defaults(settings)
        )
        self.feature = feature = Firewalls(compiled, default_policy)
        host.request_hook(feature.request_side, Phase.FILTER)
        host.stage(feature.response_side, Phase.FILTER)
        host.tool_result_inspector(feature.tool_result)
        host.response_fields(feature.response_fields)


def _configured_defaults(settings: Any) -> set[str]:
    """The firewall names the configuration's defaults give (global, per key, per account)."""
    tables = [getattr(settings, "defaults", None)]
    for attr in ("key_defaults", "account_defaults"):
        tables += list((getattr(settings, attr, None) or {}).values())
    return {str(t.firewall) for t in tables if t is not None and getattr(t, "firewall", None)}
