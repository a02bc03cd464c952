"""A scanner's per-character buckets compile each part when first needed: whole text (a
request) compiles no partial probe, plain text no ``regex`` pattern where a std twin exists,
and only text that is not ASCII the combined probe. What they decide is held to ``regex``
alone in ``test_fast_paths.py``; here, that the parts stay uncompiled until then."""

from __future__ import annotations

from typing import Any

from tollway.firewalls.config import PRESETS
from tollway.firewalls.policy import compile_policy
from tollway.firewalls.request import apply_body


def _buckets(sc: Any) -> list[Any]:
    return list(sc._by_set.values())


def test_a_one_field_request_compiles_no_probe_and_no_regex_pattern_on_plain_text() -> None:
    """(Text in several fields is also read across their edges, and there a probe asks
    whether a match might go on into the next field.)"""
    policy = compile_policy("strict-block", PRESETS["strict-block"])
    body = {"messages": [
        {"role": "user", "content": "You are terse. Answer in English, politely. " * 3
         + "Say a few words about the weather today, please!"},
    ]}
    assert apply_body(policy, body) == (body, [])
    sc = policy.scanner
    assert len(_buckets(sc)) >= 5
    assert all(p is None for p in sc._probes)
    for b in _buckets(sc):
        assert b.full is None and b._armed is None and b._probe is None


def test_a_stream_arms_the_probes_it_asks_and_regex_only_for_odd_text() -> None:
    sc = compile_policy("strict-block", PRESETS["strict-block"]).scanner
    f = sc.stream()
    out = "".join(f.feed(p) for p in ["tok ", "tok ", "to"]) + f.flush()
    assert out == "tok tok to"
    t = sc._bucket("t")
    assert t is not None and t._armed is not None  # asked whether "to" might go on
    assert t.full is None and t._probe is None
    assert any(p is not None for p in sc._probes)
    assert not all(p is not None for p in sc._probes)  # only the rules that start with t
    f = sc.stream()
    out = "".join(f.feed(p) for p in ["tök ", "tö"]) + f.flush()
    assert out == "tök tö"
    assert t.full is not None and t._probe is not None  # non-ASCII: the regex parts
    assert f.blocked is None


def test_a_bucket_is_shared_by_every_table_that_names_its_rules() -> None:
    sc = compile_policy("strict-block", PRESETS["strict-block"]).scanner
    b = sc._bucket("a")
    assert b is not None and sc._complete("a", 0) is b
    widths, _ = sc._reach("a")
    assert sc._reach_bucket("a", 0) is b  # the narrowest width: every rule that starts with a
    assert len(widths) >= 1
