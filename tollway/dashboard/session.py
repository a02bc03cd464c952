"""Signed session cookies and CSRF tokens (stdlib ``hmac``, SHA-256).

A session is ``base64url(json).base64url(hmac)``: who is logged in (``admin``, or
an account id and the key id it logged in with, never the key), when it expires
and a random nonce. The CSRF token of a session is ``hmac(secret, "csrf:" +
nonce)``, so every form of the session carries the same token and a forged form
from another site cannot know it. Before login, a short-lived signed nonce cookie
plays the session's part (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["COOKIE", "PRE_COOKIE", "Session", "SessionSigner", "derive_secret"]

COOKIE = "tollway_dashboard"
PRE_COOKIE = "tollway_dashboard_login"
PRE_SECONDS = 3600.0


def derive_secret(configured: str | None, admin_key: str | None) -> bytes:
    """The signing key: configured, else derived one-way from the admin key, else random.

    Derived from the admin key, sessions survive restarts and work across workers,
    and changing the admin key logs everyone out.
    """
    if configured:
        return configured.encode()
    if admin_key:
        return hmac.new(admin_key.encode(), b"tollway dashboard sessions", hashlib.sha256).digest()
    return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user: ``account_id`` None means admin."""

    account_id: str | None
    key_id: str | None
    expires: float
    nonce: str

    @property
    def is_admin(self) -> bool:
        return self.account_id is None


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens."""

    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._secret = secret
        self.lifetime = lifetime_seconds

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())

    def _seal(self, data: dict[str, Any]) -> str:
        payload = orjson.dumps(data)
        return _b64(payload) + "." + self._sign(payload)

    def _open(self, value: str | None) -> dict[str, Any] | None:
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        try:
            payload = _unb64(body)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int | float):
            return None
        return data if data["exp"] > time.time() else None

    # -- sessions ---------------------------------------------------------------
    def issue(self, account_id: str | None, key_id: str | None) -> tuple[str, Session]:
        """A new session's cookie value."""
        session = Session(account_id, key_id, time.time() + self.lifetime, secrets.token_hex(16))
        value = self._seal({"a": account_id, "k": key_id, "exp": session.expires,
                            "n": session.nonce})  # fmt: skip
        return value, session

    def read(self, value: str | None) -> Session | None:
        """The session of a cookie value, or None (missing, forged or expired)."""
        data = self._open(value)
        if data is None or not isinstance(data.get("n"), str):
            return None
        return Session(data.get("a"), data.get("k"), float(data["exp"]), data["n"])

    # -- CSRF ---------------------------------------------------------------------
    def csrf_token(self, nonce: str) -> str:
        return self._sign(b"csrf:" + nonce.encode())

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(nonce), str(token))

    def issue_pre(self) -> tuple[str, str]:
        """A pre-login cookie value and its nonce (the login form's CSRF token source)."""
        nonce = secrets.token_hex(16)
        return self._seal({"exp": time.time() + PRE_SECONDS, "n": nonce}), nonce

    def read_pre(self, value: str | None) -> str | None:
        data = self._open(value)
        return data["n"] if data is not None and isinstance(data.get("n"), str) else None
