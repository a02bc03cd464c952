"""Entry points: how an installed package adds plugins, providers, tools and detectors.

A separate package declares, in its ``pyproject.toml``::

    [project.entry-points."tollway.providers"]
    echo = "tollway_echo:EchoProvider"          # type: echo in the config

Groups: ``tollway.plugins`` (a ``Plugin`` object or a callable returning one),
``tollway.providers`` (a provider factory), ``tollway.tools`` (a tool-source
factory) and ``tollway.detectors`` (a ``DetectorSpec`` or a sequence of them). The
built-ins are the same kind of entries (``name → module:attribute``), listed in code
so that a source checkout works without install metadata. Nothing is imported until
it is used; a target that does not load is an error naming it and its package.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

__all__ = ["GROUPS", "entry_points", "load"]

GROUPS = ("tollway.plugins", "tollway.providers", "tollway.tools", "tollway.detectors")


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The installed entry points of ``group`` by name (read afresh: installs show up)."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def load(entry: metadata.EntryPoint) -> Any:
    """The entry point's object; ``RuntimeError`` naming it when it cannot be imported."""
    try:
        return entry.load()
    except Exception as exc:
        package = entry.dist.name if entry.dist is not None else "?"
        raise RuntimeError(
            f"entry point {entry.group}:{entry.name} = {entry.value} "
            f"(package {package}) could not be loaded: {exc}"
        ) from exc
