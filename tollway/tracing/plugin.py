"""The tracing plugin: traces, metrics, logs and spans (settles in ``Phase.OBSERVE``).

It observes last: its settler sees the settled cost, and the body capture
(``tracing.bodies``, when some account opts in) sees the request and the response as
the firewalls left them.
"""

from __future__ import annotations

import argparse
from typing import Any

from tollway.plugins.contract import Host, Phase, RawRoute, Route
from tollway.tracing.config import TracingConfig
from tollway.tracing.observability import Observability

__all__ = ["TracingPlugin"]


class TracingPlugin:
    """Tracing as a plugin; ``config`` overrides ``settings.tracing``; ``options`` go
    to ``Observability``."""

    name = "tracing"

    def __init__(self, config: TracingConfig | None = None, **options: Any) -> None:
        self.config = config
        self.options = options
        self.observability: Observability | None = None  # once registered

    def register(self, host: Host) -> None:
        settings = host.settings
        config = self.config or getattr(settings, "tracing", None) or TracingConfig()
        if not config.enabled:
            return
        obs = Observability(
            config, database=settings.database, known_models=settings.models, **self.options
        )
        self.observability = obs
        if config.store_bodies or config.store_bodies_accounts:
            from tollway.tracing.bodies import BodyCapture

            bodies = BodyCapture(config)
            host.request_hook(bodies.capture_request, Phase.OBSERVE)  # after the firewall's
            host.stage(bodies.response_stage, Phase.OBSERVE)  # after the firewall's stage
        host.settler(obs.settle, Phase.OBSERVE)
        if config.metrics.enabled:  # the in-flight gauge: nothing to keep without metrics
            host.stage(obs.count_stream, Phase.OBSERVE)
        host.on_start(obs.start)
        host.on_stop(obs.stop)
        from tollway.tracing.openapi import OPERATIONS as DOCS

        for method, pattern, handler, access in obs.api.routes():
            host.route(Route(method, pattern, handler, access, DOCS[(method, pattern)]))
        if config.metrics.enabled:
            doc = DOCS[("GET", "/metrics")]
            host.route(RawRoute("GET", "/metrics", obs.metrics_endpoint, doc))

    def cli(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """``traces``."""
        from tollway.tracing import cli as cli_traces

        cli_traces.register(subparsers)
