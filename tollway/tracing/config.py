"""Typed settings for traces, metrics, logs and OpenTelemetry (``Settings.tracing``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LogsConfig", "MetricsConfig", "OtelConfig", "TracingConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsConfig(_Strict):
    """Prometheus ``/metrics``; labels stay bounded unless you opt in."""

    enabled: bool = Field(True, description="serve GET /metrics and count requests")
    account_labels: bool = Field(
        False, description="add an 'account' label (one series per account: mind cardinality)"
    )
    ttft_buckets: tuple[float, ...] = Field(
        (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0),
        description="seconds; time-to-first-token histogram buckets",
    )
    latency_buckets: tuple[float, ...] = Field(
        (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
        description="seconds; whole-request latency histogram buckets",
    )


class LogsConfig(_Strict):
    """One JSON line per request on stderr."""

    enabled: bool = Field(True, description="log one line per finished request")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="threshold for tollway's loggers (request lines are info)"
    )


class OtelConfig(_Strict):
    """OpenTelemetry export (needs the ``otel`` extra)."""

    endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces; unset = off"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="sent with each export")
    service_name: str = Field("tollway", description="resource attribute service.name")


class TracingConfig(_Strict):
    """Per-request traces (stored, queryable), metrics, logs and spans."""

    enabled: bool = Field(True, description="record a trace for every request")
    database: str | None = Field(
        None, description="DSN for traces; default: the top-level 'database'"
    )
    retention_days: float = Field(30.0, ge=0, description="prune older traces; 0 keeps them all")
    prune_interval_s: float = Field(3600.0, gt=0, description="seconds between prunes")
    flush_interval_ms: int = Field(
        200, gt=0, le=1000, description="longest wait before queued traces are written"
    )
    batch_size: int = Field(500, gt=0, le=10_000, description="traces written per transaction")
    max_queue: int = Field(
        20_000, gt=0, description="traces held while the database is slow or down; more are dropped"
    )
    store_bodies: bool = Field(
        False, description="store (firewall-redacted) request and response bodies, every account"
    )
    store_bodies_accounts: frozenset[str] = Field(
        frozenset(),
        description="account ids or names whose bodies are stored even if store_bodies is off",
    )
    max_body_chars: int = Field(
        65_536, gt=0, le=16_777_216,
        description="characters of text kept per body (request, response); the rest is cut",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    otel: OtelConfig = Field(default_factory=OtelConfig)

    def stores_bodies_for(self, account_id: str | None, account_name: str | None = None) -> bool:
        """Whether request and response bodies are kept for this account (by id or name)."""
        if self.store_bodies:
            return True
        accounts = self.store_bodies_accounts
        return bool(accounts) and (account_id in accounts or account_name in accounts)
