"""Install traces, metrics, logs and spans into a ``TollwayApp`` through its hooks.

Call ``install_tracing(app)`` from ``features.install_features`` last (after
billing, firewalls and tools), so that the trace settler sees the settled cost and
the body capture (``tracing.bodies``, when some account opts in) sees the request
and the response as the firewalls left them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tollway.tracing.config import TracingConfig
from tollway.tracing.observability import Observability

if TYPE_CHECKING:
    from tollway.app import TollwayApp

__all__ = ["install_tracing"]


def install_tracing(
    app: TollwayApp, config: TracingConfig | None = None, **options: Any
) -> Observability:
    """Wire an ``Observability`` into the app; ``options`` go to its constructor."""
    settings = app.settings
    if config is None:
        config = getattr(settings, "tracing", None) or TracingConfig()
    obs = Observability(
        config, database=settings.database, known_models=settings.models, **options
    )
    gw = app.gateway
    if config.enabled and (config.store_bodies or config.store_bodies_accounts):
        from tollway.tracing.bodies import BodyCapture

        bodies = BodyCapture(config)
        gw.request_hooks.append(bodies.capture_request)  # after the firewall's: redacted
        gw.stage_factories.append(bodies.response_stage)  # after the firewall's stage
    gw.settlers.append(obs.settle)
    gw.stage_factories.append(obs.count_stream)
    gw.on_start.append(obs.start)
    gw.on_stop.append(obs.stop)
    for method, pattern, handler, access in obs.api.routes():
        app.add_route(method, pattern, handler, access)
    if config.metrics.enabled:
        app.add_raw_route("GET", "/metrics", obs.metrics_endpoint)
    return obs
