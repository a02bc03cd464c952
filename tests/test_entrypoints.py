"""Entry points: an installed part that cannot be imported is an error naming it."""

from __future__ import annotations

from importlib import metadata

import pytest

from tollway.entrypoints import load


def test_a_broken_entry_point_names_itself() -> None:
    entry = metadata.EntryPoint(name="echo", value="no_such_module:Echo",
                                group="tollway.providers")  # fmt: skip
    with pytest.raises(RuntimeError, match=r"tollway.providers:echo = no_such_module:Echo"):
        load(entry)


def test_a_good_entry_point_loads() -> None:
    entry = metadata.EntryPoint(name="sim", value="tollway.providers.simulated:SimulatedProvider",
                                group="tollway.providers")  # fmt: skip
    assert load(entry).__name__ == "SimulatedProvider"

