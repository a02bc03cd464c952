"""Provider type name → adapter factory. Built-ins register like any extension.

Each built-in adapter is named once, in ``BUILTINS`` (type → ``module:Class``), and
imported only when a config uses it, so an adapter's optional dependencies
(google-auth for ``vertex``, botocore for ``bedrock``) are needed only by the
deployments that use them. ``register_provider`` adds or replaces a type at run
time (a third-party package); a registered type wins over a built-in of the same
name.

A factory is called as ``factory(name, config, session)``. It may also have a
``check_config(config)`` callable attribute (a static method of the adapter
class): it runs when the configuration is validated and raises ``ValueError``
naming what is wrong, so ``tollway check-config`` reports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.config import ProviderConfig
    from tollway.providers.base import Provider

__all__ = [
    "BUILTINS",
    "check_provider_config",
    "create_provider",
    "known_types",
    "provider_factory",
    "register_provider",
]

Factory = Callable[[str, "ProviderConfig", Any], "Provider"]

BUILTINS: dict[str, str] = {
    "openai": "tollway.providers.openai_compat:OpenAIProvider",
    "anthropic": "tollway.providers.anthropic:AnthropicProvider",
    "simulated": "tollway.providers.simulated:SimulatedProvider",
    "gemini": "tollway.providers.gemini.provider:GeminiProvider",
    "vertex": "tollway.providers.gemini.vertex:VertexProvider",
    "bedrock": "tollway.providers.bedrock.provider:BedrockProvider",
    "azure": "tollway.providers.azure:AzureOpenAIProvider",
}

_FACTORIES: dict[str, Factory] = {}


def register_provider(type_name: str, factory: Factory) -> None:
    """Make ``type: <type_name>`` in the config build providers with ``factory``."""
    if not type_name or not isinstance(type_name, str):
        raise ValueError("a provider type needs a non-empty name")
    _FACTORIES[type_name] = factory


def known_types() -> list[str]:
    """Every provider type a config may name, sorted."""
    return sorted({*BUILTINS, *_FACTORIES})


def provider_factory(type_name: str) -> Factory:
    """The factory for ``type_name``; ``ValueError`` listing the known types if none."""
    factory = _FACTORIES.get(type_name)
    if factory is not None:
        return factory
    target = BUILTINS.get(type_name)
    if target is None:
        raise ValueError(
            f"unknown provider type {type_name!r} (known: {', '.join(known_types())})"
        )
    module_name, _, attr = target.partition(":")
    built: Factory = getattr(importlib.import_module(module_name), attr)
    return built


def check_provider_config(config: ProviderConfig) -> None:
    """Run the adapter's own config check, if it has one (``ValueError`` when bad)."""
    check = getattr(provider_factory(config.type), "check_config", None)
    if check is not None:
        check(config)


def create_provider(name: str, config: ProviderConfig, session: Any) -> Provider:
    """Build the adapter for one configured provider."""
    try:
        factory = provider_factory(config.type)
    except ValueError as exc:
        raise ValueError(f"providers.{name}.type: {exc}") from None
    return factory(name, config, session)
