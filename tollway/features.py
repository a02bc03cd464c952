"""Plugs the optional features into the gateway, each through the same hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.app import TollwayApp
    from tollway.config import Settings

__all__ = ["install_features", "prepare_demo", "register_cli"]


def install_features(app: TollwayApp) -> None:
    """Install every feature the settings turn on (billing, firewalls, tools, traces).

    Order matters: tracing goes last so its settler sees the settled cost.
    """
    if app.settings.tracing.enabled:
        from tollway.tracing.feature import install_tracing

        install_tracing(app)


def prepare_demo(settings: Settings) -> str | None:
    """Set up the demo's state (account, key); returns the demo API key if any."""
    return None


def register_cli(subparsers: Any) -> None:
    """Add the feature commands to the ``tollway`` CLI."""
    from tollway import cli_traces

    cli_traces.register(subparsers)
