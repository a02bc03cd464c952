"""The ``dashboard:`` config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DashboardConfig"]


class DashboardConfig(BaseModel):
    """``dashboard: {enabled, session_hours, session_secret}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="serve the web dashboard at /dashboard")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="login session lifetime")
    session_secret: str | None = Field(
        None, min_length=32,
        description="signs session cookies; default derived from the admin key, else random "
        "per process (set it when running several workers)",
    )
