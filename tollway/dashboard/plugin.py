"""The one entry point: ``install_dashboard(app)`` mounts ``/dashboard`` on a ``TollwayApp``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tollway.app import TollwayApp
    from tollway.dashboard.routes import Dashboard

__all__ = ["install_dashboard"]


def install_dashboard(app: TollwayApp) -> Dashboard | None:
    """Mount the dashboard when ``dashboard.enabled``; its storage opens at start-up."""
    if not app.settings.dashboard.enabled:
        return None
    from tollway.dashboard.routes import PREFIX, Dashboard

    dashboard = Dashboard(app.settings, app.admin_key)
    app.gateway.on_start.append(dashboard.start)
    app.gateway.on_stop.append(dashboard.stop)
    app.add_prefix_route(PREFIX, dashboard)
    return dashboard
