"""Scanner internals: the position gate is exact, the window is bounded, exports exist."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.firewalls import FirewallSet, PolicyConfig
from tollway.firewalls.starts import first_chars, word_start

from .test_property import PRESET_NAMES, texts

POLICIES = FirewallSet.from_config(
    {"terms": PolicyConfig(detectors={"custom": {"action": "redact",
                                                 "params": {"terms": ["Falcon", "x-9"]}}}),
     "free": PolicyConfig(detectors={"custom": {"action": "redact",
                                                "params": {"regexes": ["[0-9]{3}X"]}}})}
)


@settings(max_examples=200, deadline=None)
@given(text=texts, name=st.sampled_from([*PRESET_NAMES, "terms"]))
def test_gate_and_buckets_never_skip_a_start(text: str, name: str) -> None:
    sc = POLICIES.get(name).scanner
    assert sc._gate is not None
    for p in range(len(text)):
        for i, rule in enumerate(sc.rules):
            if rule.detector.rx.match(text, p, partial=True) is not None:
                assert sc._gate.match(text, p), (rule.detector.name, p)
                f = sc._firsts[i]
                assert f is None or ord(text[p]) > 127 or text[p] in f


def test_ungateable_custom_regex_still_works() -> None:
    sc = POLICIES.get("free").scanner
    assert sc._gate is None
    f = sc.stream()
    out = "".join(f.feed(c) for c in "ab123Xcd") + f.flush()
    assert out == "ab[REDACTED:custom]cd"


def test_starts_analysis() -> None:
    assert first_chars(r"(?<!\w)(?i:ab|c)") == frozenset("acAC")
    assert first_chars(r"x{0,2}y") == frozenset("xy")
    assert first_chars(r"[^a]b") is None
    assert word_start(r"(?<![A-Za-z0-9_])foo")
    assert word_start(r"-----BEGIN")
    assert not word_start(r"foo")
    assert not word_start(r"(?<![0-9])7")


@pytest.mark.parametrize(
    "module",
    ["config", "custom", "detector", "injection", "pii", "policy", "prefix", "registry",
     "plugin", "request", "scanner", "secrets", "stage", "starts"],
)
def test_exports_exist(module: str) -> None:
    mod = importlib.import_module(f"tollway.firewalls.{module}")
    assert all(hasattr(mod, name) for name in mod.__all__)
