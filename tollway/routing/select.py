"""Deployment choice for a model alias, by the alias's ``strategy``.

==============  ==============================================================
strategy        order of the deployments tried for one request
==============  ==============================================================
``fallback``    config order
``weighted``    one picked at random in proportion to ``weight``, then the
                others in config order
``least-busy``  fewest requests in flight first (ties: config order)
``latency``     lowest EWMA time to first token first, unmeasured ones before
                all; a ``latency_explore`` share of requests puts a random one
                first so estimates stay fresh
==============  ==============================================================

Deployments at their ``max_in_flight`` are left out. Cooling-down ones are
left out while any other is healthy; when all are cooling down they are all
tried, the least recently failed first.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from tollway.config import DeploymentConfig, ModelConfig
from tollway.errors import ModelNotFound
from tollway.providers.base import Provider
from tollway.routing.config import RoutingConfig
from tollway.routing.health import HealthBook

__all__ = ["Plan", "Router"]


class Plan(NamedTuple):
    """Deployments to try, in order, and those left out with the reason."""

    deployments: list[DeploymentConfig]
    skipped: list[tuple[DeploymentConfig, str]]
    all_cooling: bool = False


class Router:
    """Orders an alias's deployments for one request and tracks their outcomes."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        providers: Mapping[str, Provider],
        routing_config: RoutingConfig | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.models = models
        self.providers = providers
        self.config = routing_config or RoutingConfig()
        self.health = HealthBook(self.config, clock)
        self._rng = rng or random.Random()

    def plan(self, alias: str) -> Plan:
        """The deployments to try for one request, best first."""
        try:
            model = self.models[alias]
        except KeyError:
            raise ModelNotFound(f"The model {alias!r} does not exist", param="model") from None
        health = self.health
        healthy: list[DeploymentConfig] = []
        cooling: list[DeploymentConfig] = []
        skipped: list[tuple[DeploymentConfig, str]] = []
        for dep in model.deployments:
            record = health.get(dep.id)
            if dep.max_in_flight is not None and record.in_flight >= dep.max_in_flight:
                skipped.append((dep, "at max_in_flight"))
            elif health.cooling(dep.id):
                cooling.append(dep)
            else:
                healthy.append(dep)
        if not healthy:
            cooling.sort(key=lambda d: health.get(d.id).last_failure)
            return Plan(cooling, skipped, bool(cooling))
        skipped.extend((dep, "cooling down") for dep in cooling)
        if len(healthy) > 1:
            healthy = self._arrange(model.strategy, healthy)
        return Plan(healthy, skipped)

    def order(self, alias: str) -> list[DeploymentConfig]:
        """The deployments to try for one request, best first."""
        return self.plan(alias).deployments

    def started(self, deployment: DeploymentConfig) -> None:
        """A request to ``deployment`` began."""
        self.health.started(deployment.id)

    def finished(self, deployment: DeploymentConfig, ok: bool, ttft: float | None) -> None:
        """A request to ``deployment`` ended; ``ttft`` in seconds if it answered."""
        self.health.finished(deployment.id, ok, ttft)

    def released(self, deployment: DeploymentConfig) -> None:
        """A request to ``deployment`` ended with no verdict (e.g. the client left)."""
        self.health.released(deployment.id)

    def block(self, deployment: DeploymentConfig, seconds: float) -> None:
        """Keep ``deployment`` out of plans for ``seconds`` (upstream Retry-After)."""
        self.health.block(deployment.id, seconds)

    def _arrange(self, strategy: str, deps: list[DeploymentConfig]) -> list[DeploymentConfig]:
        if strategy == "fallback":
            return deps
        if strategy == "weighted":
            first = self._rng.choices(range(len(deps)), weights=[d.weight for d in deps])[0]
        elif strategy == "least-busy":
            return sorted(deps, key=lambda d: self.health.get(d.id).in_flight)
        elif strategy == "latency":
            deps = sorted(deps, key=self._ttft_key)
            if self._rng.random() >= self.config.latency_explore:
                return deps
            first = self._rng.randrange(len(deps))
        else:
            raise ValueError(f"unknown routing strategy {strategy!r}")
        return [deps[first], *deps[:first], *deps[first + 1 :]]

    def _ttft_key(self, dep: DeploymentConfig) -> float:
        ttft = self.health.get(dep.id).ttft
        return -1.0 if ttft is None else ttft
