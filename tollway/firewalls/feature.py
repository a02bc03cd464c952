"""Plugs firewalls into the gateway through its public hooks (request hook + stage).

``install(app)`` compiles every policy once; per request it reads the policy
name from the ``firewall`` extension field (or ``default_policy(ctx)``, e.g. an
API key's or account's default), applies the request side to everything the
upstream will receive before admission, and adds the response stage. An unknown
name is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollway.context import RequestContext
from tollway.firewalls.policy import CompiledPolicy, FirewallSet
from tollway.firewalls.request import FirewallBlocked, apply_chat_request, merge_verdicts
from tollway.pipeline.compose import Stage
from tollway.pipeline.firewall import response_firewall

__all__ = ["install", "policy_for"]

DefaultPolicy = Callable[[RequestContext], str | None]


def policy_for(
    firewalls: FirewallSet, ctx: RequestContext, default_policy: DefaultPolicy | None = None
) -> CompiledPolicy | None:
    """The policy this request uses: its ``firewall`` field, else the default, else none."""
    name = ctx.request.extensions.get("firewall") if ctx.request is not None else None
    if not name and default_policy is not None:
        name = default_policy(ctx)
    if not name:
        return None
    return firewalls.get(str(name))


def install(app: Any, default_policy: DefaultPolicy | None = None) -> FirewallSet:
    """Register the request hook and the response stage factory on ``app.gateway``."""
    firewalls = FirewallSet.from_config(getattr(app.settings, "firewalls", None) or {})
    gw = app.gateway

    async def request_side(ctx: RequestContext) -> None:
        policy = policy_for(firewalls, ctx, default_policy)
        if policy is None or ctx.request is None:
            return
        ctx.request.extensions["firewall"] = policy.name  # reported in the response
        try:
            verdicts = apply_chat_request(policy, ctx.request)
        except FirewallBlocked as exc:
            merge_verdicts(ctx.firewall_verdicts, exc.verdicts)
            raise
        merge_verdicts(ctx.firewall_verdicts, verdicts)

    def response_side(ctx: RequestContext) -> Stage | None:
        policy = policy_for(firewalls, ctx, default_policy)
        return None if policy is None or not policy.on_response else response_firewall(policy)

    gw.request_hooks.append(request_side)
    gw.stage_factories.append(response_side)
    return firewalls
