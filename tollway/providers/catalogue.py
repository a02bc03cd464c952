"""The model catalogue: well-known models' limits and prices per provider type.

The data lives in ``tollway/data/catalogue.yaml``; each provider block names its
pricing page and the date its figures were checked. A deployment that says
``prices: catalog`` gets its model's catalogue prices; a mapping
``prices: {catalog: true, output_per_mtok: 12}`` takes the catalogue's and lets
every price written out win. A model the catalogue does not know is a config
error naming the models it does know for that provider type.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "CatalogueEntry",
    "catalogue",
    "catalogue_prices",
    "lookup",
]

# catalogue field → config.Prices field
PRICE_FIELDS = {
    "input": "input_per_mtok",
    "cached_input": "cached_input_per_mtok",
    "cache_write": "cache_write_per_mtok",
    "cache_write_1h": "cache_write_1h_per_mtok",
    "output": "output_per_mtok",
}


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One model of one provider type."""

    provider_type: str
    model: str
    aliases: tuple[str, ...]
    context_window: int | None
    max_output: int | None
    prices: dict[str, Decimal]  # catalogue field name → USD per 1M tokens
    source: str
    checked: str
    notes: str = ""


@cache
def catalogue() -> dict[str, dict[str, CatalogueEntry]]:
    """provider type → model id (and each alias) → entry."""
    text = resources.files("tollway").joinpath("data/catalogue.yaml").read_text("utf-8")
    return parse_catalogue(yaml.safe_load(text))


def parse_catalogue(data: Any) -> dict[str, dict[str, CatalogueEntry]]:
    """Validate the catalogue's YAML; every figure becomes an exact Decimal."""
    out: dict[str, dict[str, CatalogueEntry]] = {}
    for ptype, block in (data or {}).items():
        if not block.get("source") or not block.get("checked"):
            raise ValueError(f"catalogue: {ptype} needs a source and the date it was checked")
        models: dict[str, CatalogueEntry] = {}
        for model, spec in (block.get("models") or {}).items():
            unknown = set(spec) - {*PRICE_FIELDS, "aliases", "context_window", "max_output"}
            if unknown:
                raise ValueError(f"catalogue: {ptype}/{model}: unknown fields {sorted(unknown)}")
            prices = {}
            for name in PRICE_FIELDS:
                if name in spec:
                    if not isinstance(spec[name], str):  # YAML floats are not exact
                        raise ValueError(f"catalogue: {ptype}/{model}.{name} must be a string")
                    prices[name] = Decimal(spec[name])
            if "input" not in prices or "output" not in prices:
                raise ValueError(f"catalogue: {ptype}/{model} needs input and output prices")
            entry = CatalogueEntry(
                ptype, str(model), tuple(spec.get("aliases") or ()),
                spec.get("context_window"), spec.get("max_output"), prices,
                str(block["source"]), str(block["checked"]), str(block.get("notes") or ""),
            )
            for name in (entry.model, *entry.aliases):
                models[name] = entry
        out[str(ptype)] = models
    return out


def lookup(provider_type: str, model: str) -> CatalogueEntry:
    """The entry for ``model`` of ``provider_type``; ``ValueError`` naming the known ones."""
    models = catalogue().get(provider_type)
    if not models:
        raise ValueError(
            f"the model catalogue has no prices for provider type {provider_type!r} "
            f"(it has: {', '.join(sorted(catalogue()))}); set the prices explicitly"
        )
    try:
        return models[model]
    except KeyError:
        known = sorted({e.model for e in models.values()})
        raise ValueError(
            f"the model catalogue does not know {provider_type} model {model!r} "
            f"(it knows: {', '.join(known)}); set the prices explicitly"
        ) from None


def catalogue_prices(provider_type: str, model: str, supported: set[str]) -> dict[str, str]:
    """The ``Prices`` fields for a catalogue model, as exact decimal strings.

    ``supported`` is the set of price fields the configuration understands; a
    catalogue price with no field to go to is an error rather than dropped money.
    """
    entry = lookup(provider_type, model)
    out = {}
    for name, value in entry.prices.items():
        field = PRICE_FIELDS[name]
        if field not in supported:
            raise ValueError(
                f"the catalogue price {name!r} of {provider_type}/{model} has no price "
                "field in this version of tollway; set the prices explicitly"
            )
        out[field] = str(value)
    return out
