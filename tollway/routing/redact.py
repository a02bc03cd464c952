"""Keep tollway's own secrets out of what upstreams say when they fail.

An upstream error message is text another server wrote; it may echo what it was
sent, tollway's upstream key included. Every upstream error enters the request
path in one place, the router (``routing/fallback.py``), and passes through
``SecretRedactor.error`` there before it reaches the client, a trace, a log line
or the ledger. Errors of an MCP server (a platform tool's upstream) enter in
``tools/mcp_client.py``, redacted there of what that server was sent.

What counts as a secret (``configured_secrets``): every provider's ``api_key``,
header values and secret-looking ``options``; the admin key (config or
``TOLLWAY_ADMIN_KEY``); passwords in database URLs; MCP servers' header and
environment values and URL passwords; OpenTelemetry export headers. Header and
environment values are all treated as secret except a few well-known harmless
ones (``content-type``, ``anthropic-version``, ``PATH``…). Values shorter than
``MIN_SECRET`` characters are ignored: they would match ordinary words.

A secret is replaced wherever it occurs, and so is any run of ``FRAGMENT`` or
more consecutive characters of one (an upstream that echoes a truncated key).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from tollway.errors import UpstreamError

if TYPE_CHECKING:
    from tollway.config import Settings
    from tollway.tools.config import McpServerConfig

__all__ = [
    "FRAGMENT",
    "MARK",
    "MIN_SECRET",
    "SecretRedactor",
    "configured_secrets",
    "mcp_server_secrets",
]

MARK = "[REDACTED]"
MIN_SECRET = 8
FRAGMENT = 12

_HARMLESS_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "anthropic-beta", "anthropic-version",
    "content-type", "openai-beta", "user-agent",
})
_HARMLESS_ENV = frozenset({
    "HOME", "LANG", "LC_ALL", "LOGNAME", "PATH", "PWD", "PYTHONPATH", "PYTHONUNBUFFERED",
    "SHELL", "TERM", "TMPDIR", "TZ", "USER",
})
_SECRET_WORDS = frozenset({
    "apikey", "auth", "authorization", "credential", "credentials", "cookie", "key", "pass",
    "passwd", "password", "pwd", "secret", "session", "signature", "token",
})


def _secret_name(name: str) -> bool:
    """Whether a setting's name says it holds a secret (``api_key``, ``accessToken``…)."""
    words = re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower().replace("-", "_").split("_")
    return any(word in _SECRET_WORDS for word in words)


class SecretRedactor:
    """Replaces secrets, and long fragments of them, with ``[REDACTED]``."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        alternatives: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET:
                continue
            if len(secret) <= FRAGMENT:
                alternatives.add(secret)
                continue
            alternatives.update(secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1))
        # A lookahead finds every position where some alternative starts (overlaps
        # included); longest first, so a position reports its longest match.
        ordered = sorted(alternatives, key=len, reverse=True)
        self._pattern = (
            re.compile("(?=(" + "|".join(map(re.escape, ordered)) + "))") if ordered else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """``text`` with every secret and every long fragment of one replaced."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        spans: list[list[int]] = []
        for match in pattern.finditer(text):
            start = match.start()
            end = start + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for start, end in spans:
            out.append(text[last:start])
            out.append(MARK)
            last = end
        out.append(text[last:])
        return "".join(out)

    def error(self, err: UpstreamError) -> UpstreamError:
        """Redact every text field of an upstream error in place; returns it."""
        if self._pattern is None:
            return err
        err.message = self.text(err.message)
        err.args = (err.message,)
        if isinstance(err.code, str):
            err.code = self.text(err.code)
        if err.param is not None:
            err.param = self.text(err.param)
        err.type = self.text(err.type)
        err.headers = {k: self.text(v) for k, v in err.headers.items()}
        return err

    @classmethod
    def for_settings(cls, settings: Settings, admin_key: str | None = None) -> SecretRedactor:
        """The redactor of a deployment's configured secrets."""
        return cls(configured_secrets(settings, admin_key))


def configured_secrets(settings: Settings, admin_key: str | None = None) -> set[str]:
    """Every secret value the configuration (and ``TOLLWAY_ADMIN_KEY``) holds."""
    found: set[str] = set()
    for provider in settings.providers.values():
        if provider.api_key:
            found.add(provider.api_key)
        found.update(_header_secrets(provider.headers))
        found.update(_url_secrets(provider.base_url))
        for name, value in provider.options.items():
            if isinstance(value, str) and _secret_name(name):
                found.add(value)
    for key in (admin_key, settings.admin_key, os.environ.get("TOLLWAY_ADMIN_KEY")):
        if key:
            found.add(key)
    found.update(_url_secrets(settings.database))
    tracing = settings.tracing
    found.update(_url_secrets(tracing.database))
    found.update(_header_secrets(tracing.otel.headers))
    found.update(_url_secrets(tracing.otel.endpoint))
    for server in settings.tools.mcp_servers.values():
        found.update(mcp_server_secrets(server))
    return {s for s in found if len(s) >= MIN_SECRET}


def mcp_server_secrets(server: McpServerConfig) -> set[str]:
    """The secrets tollway sends one MCP server: header and environment values, URL passwords."""
    found = set(_header_secrets(server.headers))
    found.update(_url_secrets(server.url))
    for name, value in server.env.items():
        if name.upper() not in _HARMLESS_ENV and value:
            found.add(value)
            found.update(_url_secrets(value))
    return {s for s in found if len(s) >= MIN_SECRET}


def _header_secrets(headers: Mapping[str, str]) -> Iterator[str]:
    for name, value in headers.items():
        if name.lower() in _HARMLESS_HEADERS or not value:
            continue
        yield value
        scheme, _, credential = value.strip().partition(" ")
        if credential and scheme.lower() in ("bearer", "basic", "token"):
            yield credential.strip()


def _url_secrets(url: str | None) -> Iterator[str]:
    """The password of ``scheme://user:password@host/…`` and secret-looking query values."""
    if not url or "://" not in url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        yield password
        yield unquote(password)
    for name, value in parse_qsl(parts.query):
        if value and _secret_name(name):
            yield value
