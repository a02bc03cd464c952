"""The dashboard as a plugin: ``DashboardPlugin`` mounts ``/dashboard`` (one prefix route).

Registered by ``tollway.assembly`` after the built-in features; it adds no request
hook (nothing on the hot path), only the prefix route and its start/stop (storage,
the trace store and the rollup refresher).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tollway.plugins.contract import Host, RawRoute

if TYPE_CHECKING:
    from tollway.dashboard.routes import Dashboard

__all__ = ["DashboardPlugin"]


class DashboardPlugin:
    """The web dashboard, when ``dashboard.enabled``."""

    name = "dashboard"

    def __init__(self) -> None:
        self.dashboard: Dashboard | None = None  # once registered

    def register(self, host: Host) -> None:
        settings = host.settings
        if not settings.dashboard.enabled:
            return
        from tollway.dashboard.routes import PREFIX, Dashboard

        admin_key = settings.admin_key or os.environ.get("TOLLWAY_ADMIN_KEY")

        def router() -> Any:
            """The gateway's router (deployment health), read when a page asks."""
            return getattr(host.pipeline, "router", None)

        dashboard = self.dashboard = Dashboard(settings, admin_key, router)
        host.on_start(dashboard.start)
        host.on_stop(dashboard.stop)
        host.route(RawRoute("GET", PREFIX, dashboard, prefix=True))
