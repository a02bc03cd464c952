"""Policy configuration: validation, groups, presets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollway.firewalls import PRESETS, FirewallSet, PolicyConfig


def test_presets_and_override() -> None:
    fs = FirewallSet.from_config({"monitor": PolicyConfig(detectors={"email": "monitor"})})
    assert fs.names == ["monitor", "redact-pii", "strict-block"]
    assert [r.detector.name for r in fs.get("monitor").scanner.rules] == ["email"]
    assert fs.get("strict-block").config is PRESETS["strict-block"]


def test_explicit_detector_overrides_group() -> None:
    cfg = PolicyConfig(detectors={"email": "monitor", "pii": "redact"})
    assert cfg.rules()["email"].action == "monitor"
    assert cfg.rules()["phone"].action == "redact"


def test_custom_label_and_params() -> None:
    cfg = PolicyConfig(detectors={"custom:acme": {"action": "redact",
                                                  "params": {"terms": ["Falcon"]}}})
    p = FirewallSet.from_config({"p": cfg}).get("p")
    assert p.scanner.scan("the Falcon plan").text == "the [REDACTED:acme] plan"


@pytest.mark.parametrize(
    "detectors",
    [
        {"nope": "block"},
        {"email": "explode"},
        {"custom": {"action": "block", "params": {"regexes": ["a+"]}}},
        {"phone": {"action": "block", "params": {"bogus": 1}}},
    ],
)
def test_invalid_policies_fail_at_load(detectors: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PolicyConfig(detectors=detectors)  # type: ignore[arg-type]


def test_window_must_fit_hold_back() -> None:
    with pytest.raises(ValidationError, match="hold_back_chars"):
        PolicyConfig(detectors={"secrets": "block"}, hold_back_chars=256)
    ok = PolicyConfig(detectors={"pii": "block"}, hold_back_chars=512)
    assert FirewallSet.from_config({"x": ok}).get("x").scanner.window <= 512


def test_frozen_and_extra_forbidden() -> None:
    with pytest.raises(ValidationError):
        PolicyConfig(detectors={"email": "block"}, extra=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        PRESETS["monitor"].where = "request"  # type: ignore[misc]
