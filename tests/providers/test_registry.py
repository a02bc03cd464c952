"""Provider types: built-ins and registered ones side by side; unknown types named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tollway.chunks import Event, Finish, Start
from tollway.config import ConfigError, DeploymentConfig, ProviderConfig, parse_settings
from tollway.providers import registry
from tollway.providers.base import ChatRequest
from tollway.providers.openai_compat import OpenAIProvider
from tollway.providers.simulated import SimulatedProvider


class EchoProvider:
    """A third-party adapter as a separate package would write it."""

    def __init__(self, name: str, config: ProviderConfig, session: Any) -> None:
        self.name = name

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        if "region" not in config.options:
            raise ValueError("an 'echo' provider needs options.region")

    async def stream(self, request: ChatRequest, deployment: DeploymentConfig
                     ) -> AsyncIterator[Event]:
        yield Start(model=deployment.model)
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(registry._FACTORIES)
    yield
    registry._FACTORIES.clear()
    registry._FACTORIES.update(saved)


def test_registering_a_type_keeps_the_builtins(clean_registry: None) -> None:
    registry.register_provider("echo", EchoProvider)
    sim = registry.create_provider("s", ProviderConfig(type="simulated"), None)
    assert isinstance(sim, SimulatedProvider)
    up = registry.create_provider(
        "o", ProviderConfig(type="openai", base_url="http://127.0.0.1:1/v1"), None)
    assert isinstance(up, OpenAIProvider)
    echo = registry.create_provider("e", ProviderConfig(type="echo", options={"region": "x"}),
                                    None)
    assert isinstance(echo, EchoProvider)


def test_config_accepts_registered_types_and_runs_their_check(clean_registry: None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"providers": {"e": {"type": "echo"}}})
    assert "providers.e.type: unknown provider type 'echo'" in str(info.value)
    registry.register_provider("echo", EchoProvider)
    settings = parse_settings({"providers": {"e": {"type": "echo", "options": {"region": "x"}}}})
    assert settings.providers["e"].type == "echo"
    with pytest.raises(ConfigError, match="an 'echo' provider needs options.region"):
        parse_settings({"providers": {"e": {"type": "echo"}}})


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"providers": {"p": {"type": "gemeni"}}})
    message = str(info.value)
    assert "providers.p.type: unknown provider type 'gemeni'" in message
    for known in ("anthropic", "bedrock", "gemini", "openai", "simulated", "vertex"):
        assert known in message
