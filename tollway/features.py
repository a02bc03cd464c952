"""Plugs the optional features into the gateway, each through the same hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tollway.context import RequestContext

if TYPE_CHECKING:
    from tollway.app import TollwayApp
    from tollway.config import Settings

__all__ = ["install_features", "prepare_demo", "register_cli"]


def install_features(app: TollwayApp) -> None:
    """Install every feature the settings turn on (billing, firewalls, tools, traces).

    Order matters: tracing goes last so its settler sees the settled cost.
    """
    from tollway.billing import feature as billing

    billing.install(app)

    from tollway.firewalls.feature import install as install_firewalls

    settings = app.settings

    def default_firewall(ctx: RequestContext) -> str | None:
        auth = ctx.account
        return settings.default_for(  # type: ignore[no-any-return]
            "firewall", key_id=ctx.key_id, account_id=ctx.account_id,
            account_name=getattr(auth, "account_name", None),
        )

    firewalls = install_firewalls(app, default_policy=default_firewall)

    from tollway.tools.feature import install_tools

    def default_tools(ctx: RequestContext) -> list[str] | None:
        return settings.default_for(  # type: ignore[no-any-return]
            "platform_tools", key_id=ctx.key_id, account_id=ctx.account_id,
            account_name=getattr(ctx.account, "account_name", None))

    if not settings.tools.declared:
        # nothing to run: the feature only refuses the names a request attaches
        # (its own, or a default's: a default naming tools is then an error too)
        defaults = [settings.defaults, *settings.account_defaults.values(),
                    *settings.key_defaults.values()]
        named = any(d.platform_tools for d in defaults)
        install_tools(app, settings.tools, default_tools=default_tools if named else None)
    else:
        from tollway.firewalls.feature import policy_for
        from tollway.firewalls.request import FirewallBlocked, apply_request, merge_verdicts

        async def inspect_tool_result(name: str, text: str, ctx: RequestContext) -> str:
            """The request's firewall applies to tool results before model and client see them."""
            policy = policy_for(firewalls, ctx, default_firewall)
            if policy is None:
                return text
            try:
                messages, verdicts = apply_request(policy, [{"role": "tool", "content": text}])
            except FirewallBlocked as exc:
                merge_verdicts(ctx.firewall_verdicts, exc.verdicts)
                raise
            merge_verdicts(ctx.firewall_verdicts, verdicts)
            return str(messages[0]["content"])

        install_tools(app, settings.tools, inspect=inspect_tool_result,
                      default_tools=default_tools)
    if app.settings.tracing.enabled:
        from tollway.tracing.feature import install_tracing

        install_tracing(app)
    from tollway.dashboard.plugin import install_dashboard

    install_dashboard(app)


def prepare_demo(settings: Settings) -> str | None:
    """Set up the demo's state (account, key); returns the demo API key if any."""
    from tollway.billing import feature as billing

    return billing.prepare_demo(settings)


def register_cli(subparsers: Any) -> None:
    """Add the feature commands to the ``tollway`` CLI."""
    from tollway import cli_billing, cli_models, cli_traces

    cli_billing.register(subparsers)
    cli_traces.register(subparsers)
    cli_models.register(subparsers)
