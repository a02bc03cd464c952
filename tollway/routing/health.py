"""What the router knows about each deployment: load, latency and failures.

A deployment that fails ``cooldown_failures`` times within ``cooldown_window``
seconds is cooled down for ``cooldown_seconds``. When that time is up it is
tried again (a probe): a success clears its record (and ends a cool-down), a
failure cools it down again at once. A ``Retry-After`` from the upstream blocks it the same way for
the time the upstream asked. All times come from one injectable clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tollway.routing.config import RoutingConfig

__all__ = ["DeploymentHealth", "HealthBook"]


@dataclass(slots=True)
class DeploymentHealth:
    """The router's record of one deployment."""

    in_flight: int = 0
    ttft: float | None = None  # EWMA of time to first token, seconds
    failures: deque[float] = field(default_factory=deque)
    cooled_until: float = 0.0
    tripped: bool = False  # cooled down by failures; the next failure re-cools
    last_failure: float = -math.inf


class HealthBook:
    """Health records by deployment id."""

    def __init__(
        self, config: RoutingConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or RoutingConfig()
        self.clock = clock
        self._records: dict[str, DeploymentHealth] = {}

    def get(self, dep_id: str) -> DeploymentHealth:
        """The record of one deployment (created empty on first use)."""
        record = self._records.get(dep_id)
        if record is None:
            record = self._records[dep_id] = DeploymentHealth()
        return record

    def started(self, dep_id: str) -> None:
        """A request to the deployment began."""
        self.get(dep_id).in_flight += 1

    def finished(self, dep_id: str, ok: bool, ttft: float | None) -> None:
        """A request to the deployment ended; ``ttft`` in seconds when it answered."""
        record = self.get(dep_id)
        record.in_flight = max(0, record.in_flight - 1)
        if ttft is not None:
            alpha = self.config.latency_alpha
            record.ttft = ttft if record.ttft is None else alpha * ttft + (1 - alpha) * record.ttft
        if ok:
            record.failures.clear()
            if record.tripped:  # it answered: the cool-down is over
                record.tripped = False
                record.cooled_until = 0.0
            return
        self.failure(dep_id)

    def released(self, dep_id: str) -> None:
        """A request ended without telling anything about the deployment's health."""
        record = self.get(dep_id)
        record.in_flight = max(0, record.in_flight - 1)

    def failure(self, dep_id: str) -> None:
        """Count one failure; cool the deployment down when it crosses the threshold."""
        cfg = self.config
        now = self.clock()
        record = self.get(dep_id)
        record.last_failure = now
        if now < record.cooled_until:
            return  # already cooling: late failures of requests sent before
        if record.tripped:  # a failed probe
            record.cooled_until = now + cfg.cooldown_seconds
            return
        failures = record.failures
        failures.append(now)
        while failures and failures[0] <= now - cfg.cooldown_window:
            failures.popleft()
        if len(failures) >= cfg.cooldown_failures:
            failures.clear()
            record.tripped = True
            record.cooled_until = now + cfg.cooldown_seconds

    def block(self, dep_id: str, seconds: float) -> None:
        """Skip the deployment for ``seconds`` (an upstream Retry-After)."""
        record = self.get(dep_id)
        record.cooled_until = max(record.cooled_until, self.clock() + seconds)

    def cooling(self, dep_id: str) -> bool:
        """True while the deployment should be skipped."""
        record = self._records.get(dep_id)
        return record is not None and self.clock() < record.cooled_until
