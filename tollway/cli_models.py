"""``tollway models catalog``: the model catalogue (limits, prices, sources)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tollway.providers.catalogue import CatalogueEntry, catalogue

__all__ = ["register"]

_COLUMNS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")


def register(subparsers: Any) -> None:
    """Add ``models`` to the ``tollway`` command's subparsers."""
    models = subparsers.add_parser("models", help="model catalogue")
    sub = models.add_subparsers(dest="models_command", required=True)
    cat = sub.add_parser(
        "catalog", help="list the catalogue: context window, output limit, USD per 1M tokens")
    cat.add_argument("--provider", help="only this provider type (gemini, anthropic, openai…)")
    cat.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cat.set_defaults(func=run_catalog)


def _entries(provider: str | None) -> list[CatalogueEntry]:
    seen: dict[tuple[str, str], CatalogueEntry] = {}
    for ptype, models in sorted(catalogue().items()):
        if provider and ptype != provider:
            continue
        for entry in models.values():
            seen.setdefault((ptype, entry.model), entry)
    return list(seen.values())


def run_catalog(args: argparse.Namespace) -> int:
    entries = _entries(args.provider)
    if args.provider and not entries:
        print(f"tollway: the catalogue has no provider type {args.provider!r} "  # noqa: T201
              f"(it has: {', '.join(sorted(catalogue()))})", file=sys.stderr)
        return 1
    if args.json:
        rows = [{
            "provider_type": e.provider_type, "model": e.model, "aliases": list(e.aliases),
            "context_window": e.context_window, "max_output": e.max_output,
            "prices_per_mtok": {k: str(v) for k, v in e.prices.items()},
            "reasoning_per_mtok": str(e.prices["output"]),
            "source": e.source, "checked": e.checked, "notes": e.notes,
        } for e in entries]
        print(json.dumps(rows, indent=2))  # noqa: T201
        return 0
    header = ("provider", "model", "context", "max out", *_COLUMNS, "reasoning")
    table: list[tuple[str, ...]] = [header]
    for e in entries:
        table.append((e.provider_type, e.model, str(e.context_window or "-"),
                      str(e.max_output or "-"),
                      *(str(e.prices[c]) if c in e.prices else "-" for c in _COLUMNS),
                      str(e.prices["output"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())  # noqa: T201
    print("\nUSD per 1M tokens; reasoning is billed as output. Sources:")  # noqa: T201
    for ptype in sorted({e.provider_type for e in entries}):
        first = next(e for e in entries if e.provider_type == ptype)
        print(f"  {ptype}: {first.source} (checked {first.checked})")  # noqa: T201
    return 0
