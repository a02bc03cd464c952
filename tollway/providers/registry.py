"""Provider type name → adapter factory. Built-ins register like any extension."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollway.config import ProviderConfig
from tollway.providers.base import Provider

__all__ = ["create_provider", "register_provider"]

Factory = Callable[[str, ProviderConfig, Any], Provider]
_FACTORIES: dict[str, Factory] = {}


def register_provider(type_name: str, factory: Factory) -> None:
    """Make ``type: <type_name>`` in the config build providers with ``factory``."""
    _FACTORIES[type_name] = factory


def create_provider(name: str, config: ProviderConfig, session: Any) -> Provider:
    """Build the adapter for one configured provider."""
    _register_builtins()
    try:
        factory = _FACTORIES[config.type]
    except KeyError:
        raise ValueError(f"providers.{name}.type: unknown provider type {config.type!r}") from None
    return factory(name, config, session)


def _register_builtins() -> None:
    if _FACTORIES:
        return
    from tollway.providers.openai_compat import OpenAIProvider
    from tollway.providers.simulated import SimulatedProvider

    register_provider("openai", OpenAIProvider)
    register_provider("simulated", SimulatedProvider)
    try:
        from tollway.providers.anthropic import AnthropicProvider
    except ImportError:  # the adapter is optional until it lands
        return
    register_provider("anthropic", AnthropicProvider)
