"""``python -m bench --features``: scenario e with a subset of its features on."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import Bench, parse_args


def test_only_the_chosen_features_are_on(tmp_path: Path) -> None:
    bench = Bench(parse_args(["--features", "billing"]), tmp_path)
    config, request = bench.features_on()
    assert config["billing"]["enabled"] is True
    assert config["tracing"]["enabled"] is False  # turned off, not left at its default
    assert "firewall" not in request


def test_no_features_is_every_feature_off(tmp_path: Path) -> None:
    config, request = Bench(parse_args(["--features", ""]), tmp_path).features_on()
    assert config["billing"]["enabled"] is False and config["tracing"]["enabled"] is False
    assert request == {}


def test_default_is_every_feature_on(tmp_path: Path) -> None:
    config, request = Bench(parse_args([]), tmp_path).features_on()
    assert config["billing"]["enabled"] is True and config["tracing"]["enabled"] is True
    assert request == {"firewall": "strict-block"}


def test_an_unknown_feature_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--features", "billing,telepathy"])
