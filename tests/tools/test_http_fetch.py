"""http_fetch against a real aiohttp server on 127.0.0.1 (allowed explicitly)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tollway.tools.config import HttpFetchConfig
from tollway.tools.http_fetch import HttpFetchSource
from tollway.tools.registry import ToolError

LIMIT = 1000


def site() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from the docs", content_type="text/plain")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * (LIMIT + 1), content_type="text/plain")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"y" * 100)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG", content_type="image/png")

    async def post_only(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method})

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/slow", slow)
    app.router.add_get("/binary", binary)
    app.router.add_route("*", "/method", post_only)
    return app


Scenario = Callable[[Callable[..., Awaitable[Any]], str], Awaitable[None]]


def with_server(scenario: Scenario, **options: Any) -> None:
    """Serve ``site()`` on 127.0.0.1 and run ``scenario(fetch, base_url)``."""

    async def main() -> None:
        runner = web.AppRunner(site())
        await runner.setup()
        server = web.TCPSite(runner, "127.0.0.1", 0)
        await server.start()
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        config = HttpFetchConfig(**{"allow_hosts": ["127.0.0.1"],
                                    "allow_addresses": ["127.0.0.1/32"],
                                    "max_bytes": LIMIT, "fetch_timeout": 1.0, **options})
        source = HttpFetchSource(config, 5)
        [tool] = await source.start()
        try:
            await scenario(lambda url: tool.call({"url": url}), f"http://127.0.0.1:{port}")
        finally:
            await source.close()
            await runner.cleanup()

    asyncio.run(main())


def test_allowed_host() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        result = await fetch(f"{base}/hello")
        assert result == {"url": f"{base}/hello", "status": 200, "content_type": "text/plain",
                          "text": "hello from the docs"}
        assert (await fetch(f"{base}/method"))["text"] == '{"method": "GET"}'

    with_server(scenario)


def test_redirect_within_the_allow_list() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        result = await fetch(f"{base}/redirect?to=/hello")
        assert result["url"] == f"{base}/hello" and result["text"] == "hello from the docs"

    with_server(scenario)


def test_private_address_refused_without_explicit_allowance() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match="127.0.0.1 is not public"):
            await fetch(f"{base}/hello")

    with_server(scenario, allow_addresses=[])


@pytest.mark.parametrize("url", ["http://10.1.2.3/", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/", "http://[::ffff:10.0.0.1]/", "http://0.0.0.0/"])
def test_private_literals_refused(url: str) -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match="not public"):
            await fetch(url)

    with_server(scenario, allow_hosts=["*"])


def test_name_resolving_to_loopback_is_refused_after_dns() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(ToolError, match="localhost resolves to .*non-public"):
            await fetch(f"http://localhost:{port}/hello")

    with_server(scenario, allow_hosts=["localhost"], allow_addresses=[])


def test_name_resolving_to_an_allowed_network_is_fetched() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        port = base.rsplit(":", 1)[1]
        assert (await fetch(f"http://localhost:{port}/hello"))["status"] == 200

    with_server(scenario, allow_hosts=["localhost"], allow_addresses=["127.0.0.0/8", "::1/128"])


def test_redirect_to_a_host_off_the_allow_list() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(ToolError, match="host 'localhost' is not on the allow-list"):
            await fetch(f"{base}/redirect?to=http://localhost:{port}/hello")

    with_server(scenario)


def test_redirect_to_a_refused_address() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        port = base.rsplit(":", 1)[1]
        with pytest.raises(ToolError, match="127.0.0.2 is not public"):
            await fetch(f"{base}/redirect?to=http://127.0.0.2:{port}/hello")
        with pytest.raises(ToolError, match="only http and https"):
            await fetch(f"{base}/redirect?to=file:///etc/passwd")

    with_server(scenario, allow_hosts=["127.0.0.1", "127.0.0.2"])


def test_redirect_limit() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match="too many redirects"):
            await fetch(f"{base}/loop")

    with_server(scenario, max_redirects=2)


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_oversized_body(path: str) -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match=f"larger than {LIMIT} bytes"):
            await fetch(base + path)

    with_server(scenario)


def test_timeout() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match="longer than 0.3s"):
            await fetch(f"{base}/slow")

    with_server(scenario, fetch_timeout=0.3)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/", "not on the allow-list"),
        ("ftp://127.0.0.1/", "only http and https"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("not a url", "only http and https|no host|not a valid"),
    ],
)
def test_guards_without_network(url: str, message: str) -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match=message):
            await fetch(url)

    with_server(scenario)


def test_binary_refused_and_ports_checked() -> None:
    async def scenario(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match="image/png, not text"):
            await fetch(f"{base}/binary")

    with_server(scenario)

    async def ports(fetch: Any, base: str) -> None:
        with pytest.raises(ToolError, match="port .* is not allowed"):
            await fetch(f"{base}/hello")

    with_server(ports, allow_ports=[443])
