"""Deployment choice for a model alias (in-order fallback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.config import DeploymentConfig, ModelConfig
from tollway.providers.base import Provider

__all__ = ["Router"]


class Router:
    """Orders an alias's deployments for one request and tracks their outcomes."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        providers: Mapping[str, Provider],
        routing_config: Any = None,
    ) -> None:
        self.models = models
        self.providers = providers

    def order(self, alias: str) -> list[DeploymentConfig]:
        return list(self.models[alias].deployments)

    def started(self, deployment: DeploymentConfig) -> None:
        return None

    def finished(self, deployment: DeploymentConfig, ok: bool, ttft: float | None) -> None:
        return None
