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

    install_firewalls(app, default_policy=default_firewall)
    if app.settings.tracing.enabled:
        from tollway.tracing.feature import install_tracing

        install_tracing(app)


def prepare_demo(settings: Settings) -> str | None:
    """Set up the demo's state (account, key); returns the demo API key if any."""
    from tollway.billing import feature as billing

    return billing.prepare_demo(settings)


def register_cli(subparsers: Any) -> None:
    """Add the feature commands to the ``tollway`` CLI."""
    from tollway import cli_billing, cli_traces

    cli_billing.register(subparsers)
    cli_traces.register(subparsers)
