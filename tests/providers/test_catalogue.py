"""The model catalogue: exact data with sources, ``prices: catalog``, the CLI listing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tollway.cli import main
from tollway.config import ConfigError, Prices, parse_settings
from tollway.providers.catalogue import (
    catalogue,
    catalogue_prices,
    lookup,
    parse_catalogue,
)
from tollway.providers.registry import known_types

PROVIDERS = {
    "g": {"type": "gemini", "api_key": "k"},
    "o": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"},
    "b": {"type": "bedrock", "options": {"region": "us-east-1"}},
}


def settings_with(dep: dict[str, Any]) -> Any:
    return parse_settings({"providers": PROVIDERS, "models": {"m": {"deployments": [dep]}}})


def test_every_entry_is_sourced_dated_and_exact() -> None:
    data = catalogue()
    assert set(data) <= set(known_types())
    for ptype, models in data.items():
        for name, entry in models.items():
            assert entry.source.startswith("https://") and len(entry.checked) == 10
            assert name in (entry.model, *entry.aliases)
            assert entry.prices["input"] > 0 and entry.prices["output"] > 0
            assert all(isinstance(v, Decimal) for v in entry.prices.values())
            cached = entry.prices.get("cached_input")
            assert cached is None or cached < entry.prices["input"], (ptype, name)
            assert (entry.context_window or 0) > (entry.max_output or 0) > 0


def test_floats_and_unsourced_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_catalogue({"x": {"source": "https://x", "checked": "2026-01-01",
                               "models": {"m": {"input": 0.1, "output": "1"}}}})
    with pytest.raises(ValueError, match="source"):
        parse_catalogue({"x": {"models": {}}})


def test_prices_catalog_takes_the_catalogue_figures() -> None:
    dep = settings_with({"provider": "g", "model": "gemini-2.5-flash",
                         "prices": "catalog"}).models["m"].deployments[0]
    assert dep.prices == Prices(input_per_mtok=Decimal("0.30"),
                                cached_input_per_mtok=Decimal("0.03"),
                                output_per_mtok=Decimal("2.50"))
    entry = lookup("openai", "gpt-4o-mini-2024-07-18")  # an alias
    assert entry.model == "gpt-4o-mini"


def test_an_explicit_price_wins() -> None:
    dep = settings_with({"provider": "o", "model": "gpt-4.1", "prices": {
        "catalog": True, "output_per_mtok": "9.5"}}).models["m"].deployments[0]
    assert dep.prices.output_per_mtok == Decimal("9.5")
    assert dep.prices.input_per_mtok == Decimal("2.00")
    assert dep.prices.cached_input_per_mtok == Decimal("0.50")


@pytest.mark.parametrize(("dep", "message"), [
    ({"provider": "g", "model": "gemini-9-ultra", "prices": "catalog"},
     "models.m.deployments.0.prices: the model catalogue does not know gemini model "
     "'gemini-9-ultra' (it knows: gemini-2.5-flash, gemini-2.5-flash-lite)"),
    ({"provider": "b", "model": "anthropic.claude-x", "prices": "catalog"},
     "has no prices for provider type 'bedrock'"),
    ({"provider": "nowhere", "model": "x", "prices": "catalog"}, "needs a known provider"),
])
def test_unknown_models_are_config_errors(dep: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_with(dep)
    assert message in str(info.value)


def test_a_catalogue_price_without_a_config_field_is_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match="has no price field"):
        catalogue_prices("anthropic", "claude-haiku-4-5", {"input_per_mtok", "output_per_mtok"})


def test_anthropic_catalogue_prices_include_both_cache_write_tiers() -> None:
    settings = parse_settings({
        "providers": {"a": {"type": "anthropic", "api_key": "k"}},
        "billing": {"enabled": True},
        "models": {"m": {"deployments": [
            {"provider": "a", "model": "claude-haiku-4-5", "prices": "catalog"}]}}})
    prices = settings.models["m"].deployments[0].prices
    assert (prices.input_per_mtok, prices.cached_input_per_mtok, prices.cache_write_per_mtok,
            prices.cache_write_1h_per_mtok, prices.output_per_mtok) == (
        Decimal("1"), Decimal("0.10"), Decimal("1.25"), Decimal("2"), Decimal("5"))


def test_cli_lists_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "catalog"]) == 0
    out = capsys.readouterr().out
    assert "gemini-2.5-flash" in out and "claude-opus-4-1-20250805" in out
    assert "https://ai.google.dev/gemini-api/docs/pricing (checked " in out
    assert main(["models", "catalog", "--json", "--provider", "openai"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["provider_type"] for r in rows} == {"openai"}
    mini = next(r for r in rows if r["model"] == "gpt-4o-mini")
    assert mini["prices_per_mtok"] == {"input": "0.15", "cached_input": "0.075", "output": "0.60"}
    assert mini["reasoning_per_mtok"] == "0.60" and mini["context_window"] == 128000
    assert main(["models", "catalog", "--provider", "nope"]) == 1
