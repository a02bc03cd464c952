"""Provider type name → adapter factory. Built-ins register like any extension.

Three sources, first match wins: ``register_provider`` (at run time), the
``tollway.providers`` entry points of installed packages (``type → module:Factory``,
see ``tollway.entrypoints``), and the built-ins in ``BUILTINS`` (the same kind
of entries, listed here so a source checkout needs no install metadata). Each is
imported only when a config uses it, so an adapter's optional dependencies
(google-auth for ``vertex``, botocore for ``bedrock``) are needed only by the
deployments that use them. Registering a type never hides the others.

A factory is called as ``factory(name, config, session)`` and returns a
``providers.base.Provider``. It may also have a ``check_config(config)`` callable
attribute (a static method of the adapter class): it runs when the configuration is
validated and raises ``ValueError`` naming what is wrong, so ``tollway check-config``
reports it. (This module imports neither the config nor ``providers.base``: the
config validates types through it.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from tollway.entrypoints import entry_points, load

__all__ = [
    "BUILTINS",
    "GROUP",
    "check_provider_config",
    "create_provider",
    "known_types",
    "provider_factory",
    "register_provider",
]

GROUP = "tollway.providers"

Factory = Callable[[str, Any, Any], Any]  # (name, ProviderConfig, session) -> Provider


class _Typed(Protocol):
    @property
    def type(self) -> str: ...


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
    return sorted({*BUILTINS, *entry_points(GROUP), *_FACTORIES})


def provider_factory(type_name: str) -> Factory:
    """The factory for ``type_name``; ``ValueError`` listing the known types if none."""
    factory = _FACTORIES.get(type_name)
    if factory is not None:
        return factory
    if type_name not in BUILTINS:
        entry = entry_points(GROUP).get(type_name)
        if entry is not None:
            loaded: Factory = load(entry)
            return loaded
        raise ValueError(
            f"unknown provider type {type_name!r} (known: {', '.join(known_types())})"
        )
    module_name, _, attr = BUILTINS[type_name].partition(":")
    built: Factory = getattr(importlib.import_module(module_name), attr)
    return built


def check_provider_config(config: _Typed) -> None:
    """Run the adapter's own config check, if it has one (``ValueError`` when bad)."""
    check = getattr(provider_factory(config.type), "check_config", None)
    if check is not None:
        check(config)


def create_provider(name: str, config: _Typed, session: Any) -> Any:
    """Build the adapter (a ``providers.base.Provider``) for one configured provider."""
    try:
        factory = provider_factory(config.type)
    except ValueError as exc:
        raise ValueError(f"providers.{name}.type: {exc}") from None
    return factory(name, config, session)
