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
``MIN_SECRET`` characters are ignored: they would match ordinary words; so are values
that lie within ``MARK`` itself (``REDACTED``), which every mark would show.

A secret is replaced wherever it occurs, and so is any run of ``FRAGMENT`` or
more consecutive characters of one (an upstream that echoes a truncated key).
Each text field is first cut to ``MAX_CHARS`` characters: an error message is
no place for megabytes, and the scan stays cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from tollway.errors import UpstreamError

if TYPE_CHECKING:
    from tollway.config import Settings

__all__ = [
    "FRAGMENT",
    "MARK",
    "MAX_CHARS",
    "MIN_SECRET",
    "SecretRedactor",
    "configured_secrets",
    "mcp_server_secrets",
]

MARK = "[REDACTED]"
MIN_SECRET = 8
FRAGMENT = 12
MAX_CHARS = 4000  # an upstream's error text is cut to this many characters
_BLOCK = FRAGMENT // 2
_MAX_PASSES = 16  # SecretRedactor.text: redactions of a text, the first one included

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
    """Replaces secrets, and long fragments of them, with ``[REDACTED]``.

    A run of ``FRAGMENT`` characters of a secret always contains one of the
    secret's aligned blocks of ``FRAGMENT // 2`` characters whole. So the text's
    own blocks (every ``FRAGMENT // 2`` characters long substring) are put in a
    set and intersected with the secrets' blocks; each block found is located
    and extended both ways along its secret. A secret of up to ``FRAGMENT``
    characters must occur whole. The cost grows with the text (cut first to
    ``MAX_CHARS``), barely with the number of secrets.
    """

    __slots__ = ("_where",)

    def __init__(self, secrets: Iterable[str]) -> None:
        # block -> [(secret, offset of the block in it; -1: the secret must occur whole)]
        where: dict[str, list[tuple[str, int]]] = {}
        # a value within the mark itself ("REDACTED") would be found in every mark
        for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET and s not in MARK}):
            if len(secret) <= FRAGMENT:
                where.setdefault(secret[:_BLOCK], []).append((secret, -1))
                continue
            for offset in range(0, len(secret) - _BLOCK + 1, _BLOCK):
                where.setdefault(secret[offset:offset + _BLOCK], []).append((secret, offset))
        self._where = where

    def __bool__(self) -> bool:
        return bool(self._where)

    def text(self, text: str) -> str:
        """``text`` (cut to ``MAX_CHARS``) with every secret and long fragment replaced.

        A mark's own characters may complete a fragment with the text beside it (a
        secret with ``]0000…`` in it, after a mark that ends in ``]``), so the text is
        redacted again until nothing changes. Each further pass replaces at least one
        character that is not a mark's (no secret lies within ``MARK``: such values are
        not kept, see ``__init__``), so the passes end; ``_MAX_PASSES`` bounds them anyway.
        """
        if len(text) > MAX_CHARS:
            text = f"{text[:MAX_CHARS]}… [{len(text) - MAX_CHARS} more characters]"
        for _ in range(_MAX_PASSES):
            redacted = self._once(text)
            if redacted == text:
                break
            text = redacted
        return text

    def _once(self, text: str) -> str:
        where = self._where
        if not where or len(text) < MIN_SECRET:
            return text
        found = {text[i:i + _BLOCK] for i in range(len(text) - _BLOCK + 1)}.intersection(where)
        if not found:
            return text
        spans: list[tuple[int, int]] = []
        for block in found:
            for secret, offset in where[block]:
                _locate(text, block, secret, offset, spans)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        copied = 0  # text before this index is done
        first, last = spans[0]
        for start, stop in spans[1:]:
            if start <= last:  # overlapping or touching: one span
                last = max(last, stop)
                continue
            out += (text[copied:first], MARK)
            copied, first, last = last, start, stop
        out += (text[copied:first], MARK, text[last:])
        return "".join(out)

    def error(self, err: UpstreamError) -> UpstreamError:
        """Redact (and cut) every text field of an upstream error in place; returns it."""
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


def _locate(
    text: str, block: str, secret: str, offset: int, spans: list[tuple[int, int]]
) -> None:
    """Add the spans of ``text`` where ``block`` (at ``offset`` in ``secret``) starts a
    whole short secret or lies in a run of ``FRAGMENT`` or more of its characters."""
    at = text.find(block)
    while at != -1:
        if offset < 0:
            if text.startswith(secret, at):
                spans.append((at, at + len(secret)))
        else:
            left = 0  # extend the hit to the left and to the right along the secret
            while left < offset and left < at and text[at - left - 1] == secret[offset - left - 1]:
                left += 1
            right = 0
            tail = offset + _BLOCK
            while (tail + right < len(secret) and at + _BLOCK + right < len(text)
                   and text[at + _BLOCK + right] == secret[tail + right]):
                right += 1
            if left + _BLOCK + right >= FRAGMENT:
                spans.append((at - left, at + _BLOCK + right))
        at = text.find(block, at + 1)


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


class McpServer(Protocol):
    """What an MCP server's config holds that may be secret (``tools.config``)."""

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def url(self) -> str | None: ...
    @property
    def env(self) -> Mapping[str, str]: ...


def mcp_server_secrets(server: McpServer) -> set[str]:
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
