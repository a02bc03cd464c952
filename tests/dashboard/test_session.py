"""Session cookies and CSRF tokens: forged, altered or expired values are refused."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.dashboard.session import SessionSigner, derive_secret


def test_a_session_round_trips_and_expires() -> None:
    signer = SessionSigner(b"k" * 32, 0.2)
    value, session = signer.issue("acct_1", "key_1")
    read = signer.read(value)
    assert read == session and not read.is_admin
    admin_value, _ = signer.issue(None, None)
    assert signer.read(admin_value).is_admin  # type: ignore[union-attr]
    time.sleep(0.3)
    assert signer.read(value) is None


def test_another_secret_or_admin_key_invalidates_every_session() -> None:
    value, _ = SessionSigner(derive_secret(None, "admin-one"), 60).issue(None, None)
    assert SessionSigner(derive_secret(None, "admin-one"), 60).read(value) is not None
    assert SessionSigner(derive_secret(None, "admin-two"), 60).read(value) is None
    assert derive_secret(None, None) != derive_secret(None, None)  # random per process


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.characters(codec="ascii"))
def test_any_altered_cookie_is_refused(position: int, char: str) -> None:
    signer = SessionSigner(b"s" * 32, 60)
    value, _ = signer.issue("acct_1", "key_1")
    i = position % len(value)
    altered = value[:i] + char + value[i + 1:]
    if altered != value:
        assert signer.read(altered) is None or signer.read(altered) == signer.read(value)


def test_csrf_tokens_belong_to_one_session() -> None:
    signer = SessionSigner(b"c" * 32, 60)
    _, one = signer.issue(None, None)
    _, two = signer.issue(None, None)
    assert signer.csrf_ok(one.nonce, signer.csrf_token(one.nonce))
    assert not signer.csrf_ok(one.nonce, signer.csrf_token(two.nonce))
    assert not signer.csrf_ok(one.nonce, None) and not signer.csrf_ok(one.nonce, "")
