"""Running the app under uvicorn (uvloop + httptools), one or several workers."""

from __future__ import annotations

import os

from tollway.api.protocol import TollwayHttpProtocol
from tollway.app import TollwayApp, create_app
from tollway.config import Settings, load_settings

__all__ = ["app_factory", "run"]

CONFIG_ENV = "TOLLWAY_CONFIG"


def app_factory() -> TollwayApp:
    """Worker entry point: settings from ``TOLLWAY_CONFIG``, else the demo."""
    path = os.environ.get(CONFIG_ENV)
    if path:
        return create_app(load_settings(path))
    from tollway.demo import demo_settings

    port = os.environ.get("TOLLWAY_DEMO_PORT")
    return create_app(demo_settings(int(port) if port else None))


def run(settings: Settings, *, workers: int | None = None) -> None:
    """Serve until interrupted."""
    import uvicorn

    server = settings.server
    count = workers or server.workers
    common = dict(
        host=server.host,
        port=server.port,
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
    if count > 1:
        uvicorn.run("tollway.server:app_factory", factory=True, workers=count, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
