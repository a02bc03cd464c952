"""``create_app(settings, plugins)``: the core plus the plugins, assembled. The only module
that names the built-in features.

``DEFAULT_PLUGINS`` lists the built-ins in plugin order (billing, limits, firewalls, tools,
tracing: what starts first; then the inbound APIs beside chat completions: Messages,
embeddings, Responses; the dashboard); the hooks' ``Phase`` fixes the order that matters
(money before trace). Plugins of installed packages (entry-point group ``tollway.plugins``)
come after them, sorted by entry-point name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tollway.api.messages import MessagesPlugin
from tollway.app import TollwayApp
from tollway.billing.plugin import BillingPlugin
from tollway.config import Settings
from tollway.dashboard.plugin import DashboardPlugin
from tollway.embeddings import EmbeddingsPlugin
from tollway.entrypoints import entry_points, load
from tollway.firewalls.plugin import FirewallsPlugin
from tollway.limits.plugin import LimitsPlugin
from tollway.plugins.contract import Plugin
from tollway.plugins.hooks import Hooks
from tollway.responses import ResponsesPlugin
from tollway.tools.plugin import ToolsPlugin
from tollway.tracing.plugin import TracingPlugin

__all__ = [
    "DEFAULT_PLUGINS",
    "create_app",
    "default_plugins",
    "installed_plugins",
    "prepare_demo",
    "register_cli",
]

GROUP = "tollway.plugins"

DEFAULT_PLUGINS: tuple[Callable[[], Plugin], ...] = (
    BillingPlugin,
    LimitsPlugin,
    FirewallsPlugin,
    ToolsPlugin,
    TracingPlugin,
    MessagesPlugin,
    EmbeddingsPlugin,
    ResponsesPlugin,
    DashboardPlugin,
)


def installed_plugins() -> list[Plugin]:
    """The plugins installed packages register (an object, or a callable making one)."""
    out: list[Plugin] = []
    for _name, entry in sorted(entry_points(GROUP).items()):
        loaded = load(entry)
        plugin = loaded() if isinstance(loaded, type) or not hasattr(loaded, "register") else loaded
        if not callable(getattr(plugin, "register", None)):
            raise RuntimeError(f"entry point {GROUP}:{entry.name} is not a plugin (no register)")
        out.append(plugin)
    return out


def default_plugins() -> list[Plugin]:
    """Fresh instances of the built-in plugins, then the installed ones (plugins keep
    per-app state)."""
    return [*(make() for make in DEFAULT_PLUGINS), *installed_plugins()]


def create_app(settings: Settings, plugins: Sequence[Plugin] | None = None) -> TollwayApp:
    """The ASGI app with ``plugins`` (default: the built-ins) registered, in order."""
    hooks = Hooks(settings)
    for plugin in default_plugins() if plugins is None else plugins:
        plugin.register(hooks)
    return TollwayApp(settings, hooks.seal())


def prepare_demo(settings: Settings) -> str | None:
    """Set up the demo's state (account, key); returns the demo API key if any."""
    for plugin in default_plugins():
        prepare = getattr(plugin, "prepare_demo", None)
        if prepare is not None:
            key: str | None = prepare(settings)
            if key is not None:
                return key
    return None


def register_cli(subparsers: Any) -> None:
    """Add every plugin's commands to the ``tollway`` CLI."""
    for plugin in default_plugins():
        cli = getattr(plugin, "cli", None)
        if cli is not None:
            cli(subparsers)
