"""Starting, waiting for and stopping the benchmark's processes.

The upstream, tollway and the load generators each run in their own process, with
the current interpreter and the repository root as working directory, so ``bench``
and ``tollway`` import from this checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import LoadResult, Spec

__all__ = [
    "ROOT",
    "Server",
    "free_port",
    "raise_nofile",
    "run_loadgen_groups",
    "run_loadgens",
    "start_passthrough",
    "start_tollway",
    "start_upstream",
    "tollway_cli",
    "write_config",
]

ROOT = Path(__file__).resolve().parent.parent


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A child process that answers ``GET /health``."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /health within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log_file.close()


def start_upstream(port: int, logdir: Path) -> Server:
    server = Server("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(port)],
                    port, logdir / "upstream.log")
    server.wait_healthy()
    return server


def start_passthrough(port: int, upstream_port: int, logdir: Path, tag: str = "") -> Server:
    """The baseline passthrough (``bench/passthrough.py``) in front of the upstream."""
    server = Server("passthrough", [sys.executable, "-m", "bench.passthrough", "--port", str(port),
                                    "--upstream", f"http://127.0.0.1:{upstream_port}"],
                    port, logdir / f"passthrough{tag}.log")
    server.wait_healthy()
    return server


def write_config(path: Path, port: int, upstream_port: int, workers: int, db: Path | str,
                 extra: dict[str, Any] | None = None, delays: tuple[int, ...] = (5, 20)) -> Path:
    """tollway's config (JSON, which is YAML) for the benchmark.

    Model ``bench-model`` maps to ``bench-upstream`` and ``bench-model-d<ms>`` to
    ``bench-upstream-d<ms>`` for each of ``delays``; ``bench-anthropic`` is the same
    upstream spoken to in Anthropic's format; ``extra`` is merged at the top level.
    ``db``: a SQLite file's path, or a database URL taken as it is.
    """
    prices = {"input_per_mtok": 1, "output_per_mtok": 2}
    anthropic_prices = {**prices, "cached_input_per_mtok": "0.1", "cache_write_per_mtok": "1.25",
                        "cache_write_1h_per_mtok": 2}
    config: dict[str, Any] = {
        # every load-generator connection comes from 127.0.0.1: no per-address cap
        "server": {"host": "127.0.0.1", "port": port, "workers": workers,
                   "max_connections_per_ip": None},
        "database": db if isinstance(db, str) else f"sqlite:///{db}",
        "providers": {"up": {"type": "openai", "api_key": "x",
                             "base_url": f"http://127.0.0.1:{upstream_port}/v1"},
                      "anth": {"type": "anthropic", "api_key": "x",
                               "base_url": f"http://127.0.0.1:{upstream_port}"}},
        "models": {
            f"bench-model{suffix}": {"deployments": [
                {"provider": "up", "model": f"bench-upstream{suffix}", "prices": dict(prices)}]}
            for suffix in ["", *(f"-d{ms}" for ms in sorted(set(delays)))]
        },
    }
    # Anthropic's API on both sides (scenario m: /v1/messages passed through)
    config["models"]["bench-anthropic"] = {"deployments": [
        {"provider": "anth", "model": "bench-upstream", "prices": dict(anthropic_prices)}]}
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))  # JSON is YAML
    return path


def start_tollway(config: Path, port: int, workers: int, logdir: Path) -> Server:
    argv = [sys.executable, "-m", "tollway", "serve", "--config", str(config)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    server = Server("tollway", argv, port, logdir / f"tollway-{config.stem}.log")
    server.wait_healthy(60)
    return server


def tollway_cli(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tollway ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "tollway", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _merge(into: LoadResult, part: LoadResult) -> None:
    into.ok += part.ok
    into.errors += part.errors
    into.error_samples += part.error_samples[: 5 - len(into.error_samples)]
    into.chunks += part.chunks
    into.latency_ms += part.latency_ms
    into.ttft_ms += part.ttft_ms
    into.gap_ms += part.gap_ms
    into.cpu_s += part.cpu_s
    into.wall_s = max(into.wall_s, part.wall_s)


async def run_loadgens(spec: Spec, procs: int, on_go: Any = None) -> tuple[LoadResult, float]:
    """Run ``procs`` load generator processes sharing ``spec``; merge their results.

    Concurrency and request budget are split between the processes. ``on_go`` is
    called right after all processes are told to start; returns (merged result,
    wall seconds from go until the last process reported).
    """
    (merged,), wall = await run_loadgen_groups([(spec, procs)], on_go)
    return merged, wall


async def run_loadgen_groups(groups: list[tuple[Spec, int]], on_go: Any = None
                             ) -> tuple[list[LoadResult], float]:
    """Several load shapes at once, each ``(spec, processes)``, started by one go.

    Returns one merged result per group and the wall seconds from go until the
    last process of any group reported.
    """
    children: list[tuple[int, asyncio.subprocess.Process]] = []
    longest = max(spec.duration + spec.timeout for spec, _ in groups)
    results_dir = tempfile.mkdtemp(prefix="tollway-loadgen-")
    try:
        for g, (spec, procs) in enumerate(groups):
            procs = max(1, min(procs, spec.concurrency))
            for i in range(procs):
                part = Spec(**{**asdict(spec),
                               "concurrency": spec.concurrency // procs
                               + (i < spec.concurrency % procs),
                               "requests": spec.requests // procs + (i < spec.requests % procs)
                               if spec.requests else 0})
                result_file = os.path.join(results_dir, f"{len(children)}.json")
                children.append((g, await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.loadgen", orjson.dumps(asdict(part)).decode(),
                    result_file, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    limit=1 << 28)))
        for _, child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), longest + 120)
            if not line.startswith(b'{"event":"ready"'):
                raise RuntimeError(f"load generator did not start: {line[:300]!r}")
        t0 = time.perf_counter()
        for _, child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        if on_go is not None:
            on_go()
        merged = [LoadResult() for _ in groups]
        for g, child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), longest + 120)
            told = orjson.loads(line)
            with open(told["file"], "rb") as written:
                data = orjson.loads(written.read())
            _merge(merged[g], LoadResult(**data))
        wall = time.perf_counter() - t0
        for _, child in children:
            await child.wait()
        return merged, wall
    finally:
        for _, child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        shutil.rmtree(results_dir, ignore_errors=True)
