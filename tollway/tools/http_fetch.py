"""The ``http_fetch`` built-in: GET a text resource from an allow-listed host.

Guards, each checked on the first request and again on every redirect (which
are followed by hand, never by aiohttp):

- scheme http or https, no credentials in the URL, host on ``allow_hosts``,
  port on ``allow_ports`` when set;
- every address the host resolves to must be public (``is_global``) unless it
  lies in ``allow_addresses``. The check runs inside the connector's resolver,
  so the addresses checked are the ones connected to: a second, rebinding DNS
  answer is never asked for (the DNS cache is off, each connect resolves once
  and is checked). IP literals skip resolvers, so they are checked up front;
- the body is read in chunks and refused past ``max_bytes`` (after
  decompression, so a compressed bomb is stopped too); the whole fetch,
  redirects included, has ``fetch_timeout``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from tollway.tools.config import HttpFetchConfig
from tollway.tools.registry import Tool, ToolError

__all__ = ["AddressRefused", "GuardedResolver", "HttpFetchSource", "address_allowed"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/xhtml", "application/ld+json", "application/rss", "application/atom")


class AddressRefused(OSError):
    """A host resolved to an address that is not allowed."""


def address_allowed(address: IPAddress, allowed: list[Network]) -> bool:
    """Public addresses, and those inside an explicitly allowed network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed if net.version == address.version):
        return True
    return address.is_global and not address.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver and refuses any non-allowed address."""

    def __init__(self, allowed: list[Network]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if not address_allowed(address, self._allowed):
                raise AddressRefused(f"{host} resolves to {address}, a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


class HttpFetchSource:
    """Provides the ``http_fetch`` tool; owns one guarded aiohttp session."""

    def __init__(self, config: HttpFetchConfig, default_timeout: float) -> None:
        self.config = config
        # the tool's timeout covers the fetch plus a little to report it cleanly
        self.timeout = config.timeout or max(default_timeout, config.fetch_timeout + 1)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> list[Tool]:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(list(self.config.allow_addresses)),
            use_dns_cache=False,
            limit=32,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no proxy from the environment: it would bypass the checks
            headers={"User-Agent": self.config.user_agent},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        hosts = ", ".join(self.config.allow_hosts)
        return [Tool(
            name="http_fetch",
            description=f"Fetch a web page or text resource with HTTP GET. Allowed hosts: {hosts}. "
            f"At most {self.config.max_bytes} bytes.",
            parameters={
                "type": "object",
                "properties": {"url": {"type": "string", "description": "http(s) URL"}},
                "required": ["url"],
                "additionalProperties": False,
            },
            call=self.call,
            price_usd=self.config.price_usd,
            timeout=self.timeout,
        )]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, arguments: dict[str, Any]) -> Any:
        url = arguments.get("url")
        if not isinstance(url, str) or not url:
            raise ToolError("'url' must be a non-empty string")
        try:
            async with asyncio.timeout(self.config.fetch_timeout):
                return await self.fetch(url)
        except TimeoutError:
            raise ToolError(f"the fetch took longer than {self.config.fetch_timeout:g}s") from None

    def check_url(self, raw: str) -> URL:
        """The URL if the guards that need no network allow it; ``ToolError`` if not."""
        try:
            url = URL(raw)
        except ValueError:
            raise ToolError(f"not a valid URL: {raw!r}") from None
        if url.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs are allowed, not {url.scheme or 'none'!r}")
        if url.user is not None or url.password is not None:
            raise ToolError("URLs with credentials are not allowed")
        host = (url.host or "").lower().rstrip(".")
        if not host:
            raise ToolError(f"the URL has no host: {raw!r}")
        if not any(fnmatch.fnmatchcase(host, pattern) for pattern in self.config.allow_hosts):
            raise ToolError(f"host {host!r} is not on the allow-list")
        ports = self.config.allow_ports
        if ports is not None and url.port not in ports:
            raise ToolError(f"port {url.port} is not allowed")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None and not address_allowed(literal, list(self.config.allow_addresses)):
            raise ToolError(f"address {literal} is not public and not allowed")
        return url

    async def fetch(self, raw_url: str) -> dict[str, Any]:
        """GET with redirects followed by hand, each hop checked again."""
        if self._session is None:
            raise ToolError("http_fetch is not started")
        url = self.check_url(raw_url)
        for hop in range(self.config.max_redirects + 1):
            try:
                async with self._session.get(
                    url, allow_redirects=False, timeout=aiohttp.ClientTimeout(
                        total=self.config.fetch_timeout), raise_for_status=False,
                ) as response:
                    if response.status in _REDIRECTS and "Location" in response.headers:
                        target = urljoin(str(url), response.headers["Location"])
                        if hop == self.config.max_redirects:
                            raise ToolError(
                                f"too many redirects (more than {self.config.max_redirects})"
                            )
                        url = self.check_url(target)
                        continue
                    return await self._read(url, response)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, AddressRefused):
                    raise ToolError(str(exc.os_error)) from None
                raise ToolError(f"cannot connect to {url.host}: {exc.os_error}") from None
            except AddressRefused as exc:
                raise ToolError(str(exc)) from None
            except aiohttp.ClientError as exc:
                raise ToolError(f"the fetch failed: {exc}") from None
        raise ToolError("too many redirects")  # unreachable: the loop returns or raises

    async def _read(self, url: URL, response: aiohttp.ClientResponse) -> dict[str, Any]:
        limit = self.config.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ToolError(f"the response is larger than {limit} bytes")
        content_type = response.content_type or ""
        if content_type and not content_type.startswith(_TEXT_TYPES) and not (
            content_type.endswith(("+json", "+xml"))
        ):
            raise ToolError(f"the response is {content_type}, not text")
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise ToolError(f"the response is larger than {limit} bytes")
        charset = response.charset or "utf-8"
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        return {
            "url": str(url),
            "status": response.status,
            "content_type": content_type,
            "text": text,
        }
