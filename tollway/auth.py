"""API keys: generated once, stored as a SHA-256 hash, checked from an in-memory cache.

Why a fast hash: keys are ``tw-`` + 32 random bytes (256 bits), so they cannot be
guessed or brute-forced from a leaked hash; slow password hashes (bcrypt, argon2)
exist to protect *low*-entropy secrets and would only add milliseconds to every
request. The hash is the lookup key and is compared with ``hmac.compare_digest``.
Keys are never logged; only an 11-character display prefix is stored in clear.

Cache and revocation: authenticated keys (and unknown hashes, which can never
become valid since keys are random) are cached in memory, so the hot path costs a
SHA-256 and a dict lookup. Every instance runs ``refresh()`` every
``key_refresh_interval_seconds`` (default 2 s): it re-reads keys whose row or
account changed since the last pass (``updated_at``, with a 5 s overlap for clock
skew), so a revocation or expiry change made anywhere takes effect everywhere
within a few seconds. As a backstop each entry is re-read from the database after
``key_cache_ttl_seconds``. Expiry is checked on every request against the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tollway.bounds import MAX_EXPIRY_SECONDS
from tollway.errors import AuthenticationError, InvalidRequest, PermissionDenied
from tollway.storage.base import Account, ApiKey, KeyStore

__all__ = [
    "KEY_PREFIX",
    "KeyCacheTimings",
    "AuthResult",
    "KeyAuthenticator",
    "NewKey",
    "epoch_seconds",
    "generate_key",
    "hash_key",
    "key_json",
    "parse_expiry",
]

log = logging.getLogger("tollway.auth")

KEY_PREFIX = "tw-"
_DISPLAY_CHARS = 11  # "tw-" + 8 characters
_SKEW_OVERLAP = 5.0
_MAX_CACHED = 100_000


def generate_key() -> str:
    """A new secret: ``tw-`` + 32 random bytes, URL-safe base64 (43 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """SHA-256 hex digest of the key (what the database stores)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


_DURATION = re.compile(r"^(\d{1,12})([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _bad_expiry(message: str) -> InvalidRequest:
    return InvalidRequest(f"expires: {message}", param="expires", code="invalid_value")


def parse_expiry(text: Any, now: float | None = None) -> float:
    """``30d``/``12h``/``90m`` from now, an ISO date/time (UTC if naive) or epoch seconds.

    It must lie in the future and at most ``MAX_EXPIRY_SECONDS`` (100 years) ahead;
    anything else (another type, NaN, a huge number) is a 400 naming ``expires``.
    """
    now = time.time() if now is None else now
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise _bad_expiry("must be a duration (30d, 12h), an ISO date/time or epoch seconds")
    if isinstance(text, int | float):
        at = float(text)
    elif m := _DURATION.match(text.strip()):
        at = now + int(m.group(1)) * _UNIT[m.group(2)]
    else:
        try:
            parsed = datetime.fromisoformat(text.strip()[:64])
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            at = parsed.timestamp()
        except (ValueError, OverflowError):
            raise _bad_expiry(
                f"{text[:64]!r} is neither a duration (30d, 12h) nor an ISO date/time"
            ) from None
    if not math.isfinite(at) or at <= now:
        raise _bad_expiry("the expiry must be in the future")
    if at > now + MAX_EXPIRY_SECONDS:
        raise _bad_expiry("the expiry may lie at most 100 years ahead")
    return at


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str


def epoch_seconds(value: float | None) -> int | float | None:
    """A stored time as whole seconds; one no writer of ours could store (NaN, ±inf,
    beyond 2^53) stays a float, so listing never fails on it."""
    if value is None:
        return None
    if math.isfinite(value) and abs(value) < 2**53:
        return int(value)
    return float(value)


def key_json(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    """An API key as shown by the CLI and the admin API (the secret only at creation)."""
    out: dict[str, Any] = {
        "id": key.id,
        "object": "api_key",
        "account_id": key.account_id,
        "prefix": key.prefix,
        "name": key.name,
        "created_at": epoch_seconds(key.created_at),
        "expires_at": epoch_seconds(key.expires_at),
        "revoked_at": epoch_seconds(key.revoked_at),
    }
    if secret is not None:
        out["key"] = secret
    return out


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who is calling: the account, the key, and the account's billing defaults."""

    account_id: str
    key_id: str
    account_name: str
    account: Account


@dataclass(slots=True)
class _Cached:
    key: ApiKey | None  # None: no such key
    account: Account | None
    fetched_at: float


def _bearer(header: str | None) -> str:
    if not header:
        raise AuthenticationError(
            "You didn't provide an API key. Send 'Authorization: Bearer YOUR_KEY'."
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("Malformed Authorization header: expected 'Bearer YOUR_KEY'.")
    return token


class KeyCacheTimings(Protocol):
    """How long a cached key lives and how often changed keys are re-read (seconds)."""

    @property
    def key_cache_ttl_seconds(self) -> float: ...
    @property
    def key_refresh_interval_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class DefaultTimings:
    """The defaults (the same as billing's config)."""

    key_cache_ttl_seconds: float = 60.0
    key_refresh_interval_seconds: float = 2.0


class KeyAuthenticator:
    """Creates, revokes and checks keys; caches lookups and keeps them fresh."""

    def __init__(
        self,
        store: KeyStore,
        config: KeyCacheTimings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config: KeyCacheTimings = config or DefaultTimings()
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._last_refresh = clock()
        self._task: asyncio.Task[None] | None = None

    async def create_key(
        self, account_id: str, *, name: str | None = None, expires_at: float | None = None
    ) -> NewKey:
        """Generate, store the hash, return the secret once."""
        secret = generate_key()
        key = await self._store.create_key(
            account_id, hash_key(secret), secret[:_DISPLAY_CHARS], name=name, expires_at=expires_at
        )
        return NewKey(key, secret)

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key; this instance forgets it at once, others within a refresh."""
        key = await self._store.revoke_key(key_id)
        if key is not None:
            self._cache.pop(key.key_hash, None)
        return key

    async def authenticate(self, authorization_header: str | None) -> AuthResult:
        """Check ``Authorization: Bearer tw-…``; raise AuthenticationError (401) if not valid."""
        digest = hash_key(_bearer(authorization_header))
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is None or now - cached.fetched_at > self._config.key_cache_ttl_seconds:
            found = await self._store.key_by_hash(digest)
            cached = _Cached(found[0], found[1], now) if found else _Cached(None, None, now)
            self._remember(digest, cached)
        key, account = cached.key, cached.account
        if key is None or account is None or not hmac.compare_digest(key.key_hash, digest):
            raise AuthenticationError("Incorrect API key provided.")
        if key.revoked_at is not None:
            raise AuthenticationError(f"API key {key.prefix}… has been revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError(f"API key {key.prefix}… has expired.")
        if account.disabled:
            raise PermissionDenied(f"Account {account.name!r} is disabled.")
        return AuthResult(account.id, key.id, account.name, account)

    def _remember(self, digest: str, entry: _Cached) -> None:
        self._cache[digest] = entry
        self._cache.move_to_end(digest)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)

    async def refresh(self) -> int:
        """Pull keys changed since the last pass into the cache; return how many updated."""
        started = self._clock()
        changed = await self._store.keys_changed_since(self._last_refresh - _SKEW_OVERLAP)
        self._last_refresh = started
        updated = 0
        for key, account in changed:
            if key.key_hash in self._cache:
                self._cache[key.key_hash] = _Cached(key, account, started)
                updated += 1
        return updated

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.key_refresh_interval_seconds)
            try:
                await self.refresh()
            except Exception:  # keep refreshing; the TTL is the backstop
                log.exception("key cache refresh failed")

    def start(self) -> None:
        """Start the background refresher (call from the app's startup)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        """Stop the refresher."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
