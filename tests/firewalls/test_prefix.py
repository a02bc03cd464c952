"""The cheap open-tail tests never say "decided" where the exact partial probe says open."""

from __future__ import annotations

import re

import regex  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.firewalls import FirewallSet, PolicyConfig
from tollway.firewalls.injection import InjectionParams, prompt_injection
from tollway.firewalls.prefix import open_tail

from .test_property import FRAGMENTS, PRESET_NAMES

CUSTOM = [
    r"\bfoo(?=bar)", r"(?<!\w)(?i:ab|c)d{1,3}(?!x)", r"x(?>ab|a)b{0,3}", r"a{2,5}+b",
    r"(?:[0-9]{2}[ -]?){2,4}?Z", r"\d{2,4}\b", r"(?:a|ab)(?:c|bcd)(?!e)", r"[^a-c]{1,3}q",
    r"a.{0,3}b", r"(?<=x)y{1,2}", r"ab\Bc", r"a(?=b{1,3}c)", r"(?:ab){1,3}?c", r"(?:x|)(?:y|)z",
    r"[\w-]{2,3}@", r"(?<![A-Za-z0-9])ab(?!\.[0-9])", r"(?i:straße|kelvin)", r"zz[0-9]{2,4}\b",
]
POLICIES = FirewallSet.from_config({
    "custom": PolicyConfig.model_validate({"detectors": {
        "custom:a": {"action": "redact", "params": {"regexes": CUSTOM[:9]}},
        "custom:b": {"action": "block", "params": {"regexes": CUSTOM[9:], "case_sensitive": True}},
        "custom:c": {"action": "redact", "params": {"terms": ["Falcon", "x-9", "new order"]}},
        "pii": "redact",
    }}),
})
NAMES = [*PRESET_NAMES, "custom"]
PATTERNS = sorted(
    {r.detector.pattern for n in NAMES for r in POLICIES.get(n).scanner.rules} | set(CUSTOM)
)
ASCII_TEXT = st.lists(
    st.one_of(
        st.sampled_from([f for f in FRAGMENTS if f.isascii()]),
        st.sampled_from(["foo", "bar", "xab", "aaab", "12 34-56Z", "zz123", "Falcon", "new order"]),
        st.text(st.characters(max_codepoint=127), max_size=5),
    ),
    max_size=10,
).map("".join)


def test_builtin_detectors_with_and_without_a_cheap_test() -> None:
    """Detectors without a cheap pre-test are always probed (correct, only slower)."""
    rules = POLICIES.get("strict-block").scanner.rules
    untested = {r.detector.name for r in rules if open_tail(r.detector.pattern) is None}
    assert untested == set()
    lazy = open_tail(r"ab[a-z]{0,9}?X")  # regex: partial on "ab(", so the test must say so
    assert lazy is not None and re.compile(lazy).match("ab(", 0)
    assert re.compile(open_tail(r"(?<![A-Za-z0-9])ab(?![0-9])") or "").match("ab", 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ASCII_TEXT, pattern=st.sampled_from(PATTERNS))
def test_open_tail_covers_every_partial_match(text: str, pattern: str) -> None:
    tail = open_tail(pattern)
    if tail is None:
        return
    test, probe = re.compile(tail), regex.compile(f"(?:{pattern})(?!)")
    for p in range(len(text) + 1):
        if probe.match(text, p, partial=True) is not None:
            assert test.match(text, p) is not None, (pattern, text, p)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ASCII_TEXT, name=st.sampled_from(NAMES))
def test_fast_hold_decision_equals_the_exact_probe(text: str, name: str) -> None:
    sc = POLICIES.get(name).scanner
    for p in range(len(text)):
        b = sc._bucket(text[p])
        if b is not None:
            assert b.open(text, p, True) == b.open(text, p, False), (name, text, p)


INJECTION = prompt_injection(InjectionParams()).pattern
PHRASES = prompt_injection(InjectionParams(phrases=[
    f"{verb} {what} {rules}" for verb in ("drop", "ignore", "override", "wipe")
    for what in ("the", "all your", "every")
    for rules in ("rules", "safety policy", "guard rails")])).pattern
PHRASE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["ignore", "Ignore", "IGNORE", "all", "previous", "prior", "system",
                         "instructions", "you", "are", "now", "DAN", "do", "anything", "new",
                         "reveal", "your", "prompt", "drop", "every", "rules", "safety",
                         "policy", "guard", "the", "wipe", ":", " ", "  ", "\t", "\n"]),
        st.text(st.characters(max_codepoint=127), max_size=3),
    ),
    max_size=12,
).map("".join)


def test_a_structure_too_long_to_model_whole_still_tells_ordinary_words_apart() -> None:
    """Prompt injection's phrases are too many to model whole: the test models their first
    words, so ordinary text is told apart without the probe (it was an alphabet before)."""
    for pattern in (INJECTION, PHRASES):
        tail = open_tail(pattern)
        assert tail is not None and len(tail) < 6000
        test = re.compile(tail)
        for text in ("the ", "Hello", "in the", "dog", "yes ", "news"):
            assert test.match(text, 0) is None, (pattern, text)
        for text in ("ign", "ignore all", "Ignore  previous instruc", "do any", "new "):
            assert test.match(text, 0) is not None, (pattern, text)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=PHRASE_TEXT, pattern=st.sampled_from([INJECTION, PHRASES]))
def test_a_structure_modelled_in_part_covers_every_partial_match(text: str, pattern: str) -> None:
    tail = open_tail(pattern)
    assert tail is not None
    test, probe = re.compile(tail), regex.compile(f"(?:{pattern})(?!)")
    for p in range(len(text) + 1):
        if probe.match(text, p, partial=True) is not None:
            assert test.match(text, p) is not None, (pattern, text, p)
