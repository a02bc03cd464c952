"""Real servers on 127.0.0.1 for tests: tollway under uvicorn, and fake upstreams."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from aiohttp import web

from tollway.api.protocol import TollwayHttpProtocol
from tollway.assembly import create_app
from tollway.config import Settings, parse_settings

__all__ = ["Upstream", "free_port", "run_tollway", "serve_app"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        return None


@contextmanager
def run_tollway(config: dict[str, Any] | Settings, http: Any = TollwayHttpProtocol
                ) -> Iterator[str]:
    """Run tollway with ``config`` in a thread; yields its base URL (no /v1). ``http``: the
    server's HTTP protocol (tollway's, or another such as uvicorn's own "httptools")."""
    if not isinstance(config, Settings) and "database" not in config:
        import tempfile

        config = {**config, "database": f"sqlite:///{tempfile.mkdtemp()}/tollway.db"}
    if not isinstance(config, Settings) and "billing" not in config:
        config = {**config, "billing": {"enabled": False}}  # tests about billing turn it on
    settings = config if isinstance(config, Settings) else parse_settings(config)
    with serve_app(create_app(settings), http) as url:
        yield url


@contextmanager
def serve_app(app: Any, http: Any = TollwayHttpProtocol) -> Iterator[str]:
    """Serve an ASGI app with uvicorn (uvloop, httptools) in a thread; yields its base URL.

    The HTTP protocol is tollway's (as ``tollway serve`` runs it): it applies a
    ``TollwayApp``'s connection limits and behaves as uvicorn's for any other app.
    """
    port = free_port()
    server = _ThreadServer(uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", http=http,
        lifespan="on", log_level="warning", access_log=False,
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


Handler = Callable[[web.Request, "Upstream"], Any]


class Upstream:
    """An aiohttp server in a thread; ``handler`` answers every request.

    It records the JSON bodies it received and counts connections that the
    peer closed while a response was still being written.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.closed_early = threading.Event()
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Upstream:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            self.requests.append(await request.json())
        except ValueError:
            self.requests.append({})
        self.headers.append(dict(request.headers))
        try:
            return await self.handler(request, self)  # type: ignore[no-any-return]
        except (ConnectionResetError, asyncio.CancelledError):
            self.closed_early.set()
            raise


async def send_sse(request: web.Request, payload: bytes, upstream: Upstream,
                   chunk_delay: float = 0.0) -> web.StreamResponse:
    """Stream ``payload`` (raw SSE bytes) event by event."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for part in payload.split(b"\n\n"):
        if not part.strip():
            continue
        await resp.write(part + b"\n\n")
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
    await resp.write_eof()
    return resp
