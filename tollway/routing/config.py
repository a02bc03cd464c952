"""Router settings: health cool-down, Retry-After handling, latency tracking.

Meant to sit in the main config as ``Settings.routing: RoutingConfig``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RoutingConfig"]


class RoutingConfig(BaseModel):
    """How the router judges deployments and how long it waits for them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cooldown_failures: int = Field(
        default=3, ge=1, description="failures within cooldown_window that cool a deployment down"
    )
    cooldown_window: float = Field(
        default=60.0, gt=0, description="seconds over which failures count"
    )
    cooldown_seconds: float = Field(
        default=30.0, gt=0, description="seconds a cooled-down deployment is skipped before a probe"
    )
    max_retry_after: float = Field(
        default=5.0,
        ge=0,
        description="longest upstream Retry-After tollway waits out when no other deployment "
        "is left; longer ones fail the attempt",
    )
    latency_alpha: float = Field(
        default=0.3, gt=0, le=1, description="weight of the newest time-to-first-token in its EWMA"
    )
    latency_explore: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="share of 'latency' requests sent to a random deployment so that "
        "estimates of slower ones stay fresh",
    )
