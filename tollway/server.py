"""Running the app under uvicorn (uvloop + httptools), one or several workers.

The listening socket is bound first (``listen_socket``): a taken port is one
``ListenError`` before anything else starts. Workers share that socket. Once
the server answers ``GET /health`` (one worker is serving), ``on_ready`` runs
(the CLI prints the demo banner then).
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable

from tollway.api.protocol import TollwayHttpProtocol
from tollway.app import TollwayApp
from tollway.assembly import create_app
from tollway.config import Settings, load_settings

__all__ = ["ListenError", "app_factory", "listen_socket", "run"]

CONFIG_ENV = "TOLLWAY_CONFIG"
STARTUP_FAILURE = 3  # uvicorn's exit status when the app could not start


class ListenError(Exception):
    """The server cannot listen on its address (taken port, no permission, bad host)."""


ACCEPTS_PER_ITERATION = 16  # listening handles on the one socket (``accept_handles``)


def app_factory() -> TollwayApp:
    """Worker entry point: settings from ``TOLLWAY_CONFIG``, else the demo."""
    path = os.environ.get(CONFIG_ENV)
    if path:
        return create_app(load_settings(path))
    from tollway.demo import demo_settings

    return create_app(demo_settings())


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port`` 0: any free one), for uvicorn to serve."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            why = "the port is already in use (another tollway? choose a port with --port)"
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need privileges)"
        elif isinstance(exc, socket.gaierror):
            why = "unknown host"
        else:
            why = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {where}: {why}") from None
    sock.set_inheritable(True)
    return sock


def accept_handles(sock: socket.socket, count: int = ACCEPTS_PER_ITERATION) -> list[socket.socket]:
    """``sock`` and ``count - 1`` duplicates of it, for the server to listen on all of them.

    uvloop's libuv accepts one connection per readable listening handle per loop
    iteration. Under load an iteration takes tens of milliseconds, so new connections
    queued in the kernel faster than that (500 streams opened over two seconds, each
    new request a new connection) waited there for seconds before tollway even read them:
    40 accepts a second with 200 connections queued. Each duplicate is one more handle on
    the same kernel queue, so an iteration accepts up to ``count`` connections."""
    return [sock, *(socket.fromfd(sock.fileno(), sock.family, sock.type) for _ in range(count - 1))]


def _when_ready(sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Call ``on_ready`` from a daemon thread once the server behind ``sock`` answers."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104 - the wildcard: ask the loopback
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104

    def wait() -> None:
        while True:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        on_ready()

    threading.Thread(target=wait, name="tollway-ready", daemon=True).start()


def run(
    settings: Settings,
    *,
    workers: int | None = None,
    sock: socket.socket | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Serve until interrupted; the exit status (``STARTUP_FAILURE`` if the app did not start).

    ``sock`` is the listening socket (default: bound here, ``ListenError`` if it
    cannot be); ``on_ready`` runs once the server answers requests.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    server = settings.server
    count = workers or server.workers
    if sock is None:
        sock = listen_socket(server.host, server.port)
    common = dict(
        host=server.host,
        port=sock.getsockname()[1],
        loop="uvloop",
        http=TollwayHttpProtocol,  # httptools plus header/body timeouts and connection caps
        lifespan="on",
        access_log=False,
        log_level=server.log_level,
        backlog=8192,
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    if on_ready is not None:
        _when_ready(sock, on_ready)
    handles = accept_handles(sock)
    try:
        if count > 1:
            config = uvicorn.Config("tollway.server:app_factory", factory=True, workers=count,
                                    **common)
            supervisor = Multiprocess(config, sockets=handles)
            supervisor.run()
            failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
            return STARTUP_FAILURE if failed else 0
        single = uvicorn.Server(uvicorn.Config(create_app(settings), **common))
        single.run(sockets=handles)
        return 0 if single.started else STARTUP_FAILURE
    except KeyboardInterrupt:
        return 0
    finally:
        for handle in handles:
            handle.close()
