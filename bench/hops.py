"""How often one request's task waits, and for how many event-loop iterations each wait.

Under load one loop iteration lasts as long as every open stream's chunk work (tens of ms
with 500 paced streams), so a new request's latency is about its waits times that: this
counts them. ``python -m bench.hops [--features billing,traces,firewall] [--requests N]``
starts the bench's upstream, runs tollway in this process under uvicorn (uvloop,
httptools) with its ASGI app wrapped, sends N non-streaming requests one at a time and
prints, per request, how often its task suspended and, for the median request, each wait
(µs, loop iterations). A callback that re-schedules itself counts the iterations, so the
loop never sleeps: read the iterations, not the times, as the result.

``--serve FILE`` runs the same server until interrupted for a load from outside (e.g.
``python -m bench --target URL --target-pid PID --target-key KEY --target-model
bench-model --scenarios p``; its URL, pid and key go to FILE first) and keeps writing every
request's record to FILE: ``[suspensions, µs, [[µs, iterations], ...], iterations]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from bench.features import FEATURES, setup_key
from bench.procs import free_port, start_upstream, write_config

__all__ = ["Counted", "main"]

Record = tuple[int, float, list[tuple[float, int]], int]


class Loop:
    """Counts event-loop iterations (a callback that schedules itself again)."""

    def __init__(self) -> None:
        self.iterations = 0

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.iterations += 1
        asyncio.get_running_loop().call_soon(self._tick)


class Counted:
    """Awaits a coroutine step by step as its task would, noting every suspension."""

    def __init__(self, coro: Any, loop: Loop) -> None:
        self.coro = coro
        self.loop = loop
        self.waits: list[tuple[float, int]] = []  # (µs, iterations) per suspension

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = self.coro.throw(error) if error is not None else self.coro.send(value)
            except StopIteration as done:
                return done.value
            started, iteration = time.perf_counter(), self.loop.iterations
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # noqa: BLE001 (it goes into the coroutine)
                value, error = None, exc
            self.waits.append((round((time.perf_counter() - started) * 1e6, 1),
                               self.loop.iterations - iteration))


def _config(workdir: Path, upstream_port: int, features: list[str]) -> tuple[Path, dict[str, Any]]:
    extra: dict[str, Any] = {}
    request: dict[str, Any] = {}
    for feature in FEATURES:
        extra.update(feature.config if feature.name in features else feature.off)
        if feature.name in features:
            request.update(feature.request)
    return write_config(workdir / "hops.yaml", 0, upstream_port, 1, workdir / "hops.db",
                        extra), request


def _client(port: int, key: str, request: dict[str, Any], count: int) -> None:
    while True:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/health")
            if probe.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"model": "bench-model", "max_tokens": 10,
                       "messages": [{"role": "user", "content": "Say a few words."}], **request})
    for _ in range(count):
        conn.request("POST", "/v1/chat/completions", body,
                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"request failed: {response.status} {data[:300]!r}")
        time.sleep(0.002)


def _report(records: list[Record], label: str) -> None:
    counts = [r[0] for r in records]
    line = (f"{label}: {len(records)} requests; suspensions per request median "
            f"{statistics.median(counts)}, min {min(counts)}, max {max(counts)}; "
            f"time in the app median {statistics.median(r[1] for r in records):.0f} µs")
    print(line)  # noqa: T201
    middle = sorted(records, key=lambda r: (r[0], r[1]))[len(records) // 2]
    print("  the median request's waits (µs, loop iterations):", middle[2])  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__)
    parser.add_argument("--features", default="billing,traces,firewall",
                        help="of billing,traces,firewall ('' for none)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--serve", metavar="FILE", help="serve for an outside load instead")
    args = parser.parse_args(argv)
    features = [f for f in args.features.split(",") if f]

    import uvicorn

    from tollway.api.protocol import TollwayHttpProtocol
    from tollway.assembly import create_app
    from tollway.config import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="tollway-hops-"))
    upstream = start_upstream(free_port(), workdir)
    try:
        config, request = _config(workdir, upstream.port, features)
        key, _ = setup_key(config)
        app = create_app(load_settings(str(config)))
        loop_counter = Loop()
        records: list[Record] = []

        async def counted_app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
                await app(scope, receive, send)
                return
            if not loop_counter.iterations:
                loop_counter.start()
            counted = Counted(app(scope, receive, send), loop_counter)
            started, iteration = time.perf_counter(), loop_counter.iterations
            await counted
            records.append((len(counted.waits), (time.perf_counter() - started) * 1e6,
                            counted.waits, loop_counter.iterations - iteration))

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(
            counted_app, loop="uvloop", http=TollwayHttpProtocol, lifespan="on",
            access_log=False, log_level="warning"))
        warmup = 20
        if args.serve:
            out = Path(args.serve)

            def keep_writing() -> None:
                while True:
                    part = out.with_suffix(".part")
                    part.write_text(json.dumps({"url": f"http://127.0.0.1:{port}",
                                                "pid": os.getpid(), "key": key,
                                                "records": list(records)}))
                    os.replace(part, out)
                    time.sleep(2)

            threading.Thread(target=keep_writing, daemon=True).start()
        else:
            def drive() -> None:
                _client(port, key, request, warmup + args.requests)
                time.sleep(0.3)
                _report(records[warmup:], f"features: {','.join(features) or 'none'}")
                server.should_exit = True

            threading.Thread(target=drive, daemon=True).start()
        # uvicorn raises the signal that stopped it again once it is done: exit through
        # the finally below, so the upstream is stopped too
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
        server.run(sockets=[sock])
        return 0
    finally:
        upstream.stop()


if __name__ == "__main__":
    raise SystemExit(main())
