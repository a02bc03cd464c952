"""Tollway's secrets never survive an upstream's error text, whatever surrounds them and
however they are cut (issue 12, item 9): properties of the ``SecretRedactor``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tollway.routing.redact import FRAGMENT, MARK, MIN_SECRET, SecretRedactor

UPSTREAM_KEY = "sk-upstream-4f1c9e2ab7d3086e5c1fa9b2"


def fragments(secret: str) -> list[str]:
    if len(secret) <= FRAGMENT:
        return [secret]
    return [secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)]


def leaks(text: str, secret: str) -> bool:
    return any(f in text for f in fragments(secret))


_secret = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=MIN_SECRET,
                  max_size=64).filter(lambda s: s not in MARK)  # such values are not kept
_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=80)


@settings(max_examples=examples(300), deadline=None)
@given(secrets=st.lists(_secret, min_size=1, max_size=4), parts=st.lists(_text, max_size=6),
       cut=st.data())
def test_no_secret_or_long_fragment_survives(
    secrets: list[str], parts: list[str], cut: st.DataObject
) -> None:
    """For any secrets and any text around them, whole or truncated: nothing of
    ``FRAGMENT`` characters or more of any secret is left."""
    pieces = []
    for part in parts:
        secret = cut.draw(st.sampled_from(secrets))
        start = cut.draw(st.integers(0, len(secret) - 1))
        end = cut.draw(st.integers(start + 1, len(secret)))
        whole = cut.draw(st.booleans())
        pieces += [part, secret if whole else secret[start:end]]
    text = "".join(pieces)
    out = SecretRedactor(secrets).text(text)
    for secret in secrets:
        assert not leaks(out, secret)


@settings(max_examples=examples(200), deadline=None)
@given(text=st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), max_size=200))
def test_text_without_secrets_is_untouched(text: str) -> None:
    assert SecretRedactor([UPSTREAM_KEY.upper(), "0123456789-ABCDEF"]).text(text) == text
