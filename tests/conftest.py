"""Shared fixtures: real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.schemas import CONFORMANCE
from tests.support.servers import run_tollway

SIM_MODELS: dict[str, Any] = {
    name: {"deployments": [{"provider": "sim", "model": behaviour, **extra}]}
    for name, behaviour, extra in [
        ("sim-echo", "echo", {}),
        ("sim-lorem", "lorem", {"options": {"tokens": 20}}),
        ("sim-reasoner", "reasoner", {}),
        ("sim-tool", "tool", {"options": {"arguments": {"city": "Paris"}}}),
        ("sim-refusal", "refusal", {}),
        ("sim-length", "length", {}),
        ("sim-error-mid", "error-midstream", {}),
        ("sim-error-first", "error-first", {}),
        ("sim-hang", "hang", {}),
        ("sim-no-usage", "echo", {"options": {"usage": False}}),
        ("sim-slow", "lorem", {"options": {"tokens": 400, "tokens_per_second": 200}}),
    ]
}


def sim_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": {"sim": {"type": "simulated"}},
        "models": dict(SIM_MODELS),
        "billing": {"enabled": False},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def sim_gateway() -> Iterator[str]:
    """A tollway with the simulated models; yields the base URL."""
    with run_tollway(sim_config()) as url:
        yield url


@pytest.fixture(scope="session")
def conformance_dir() -> Any:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"shared conformance data not found at {CONFORMANCE}")
    return CONFORMANCE
