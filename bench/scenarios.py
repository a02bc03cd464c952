"""The scenarios (sizes for a full run and for ``--smoke``) and running one of them.

A scenario is a load generator ``Spec`` minus the target; running it against a
``Target`` measures the target server's CPU and RSS from /proc around the measured
phase and turns the load generator's samples into figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.loadgen import Spec
from bench.measure import (
    RssSampler,
    cpu_seconds,
    machine_busy_seconds,
    percentile,
    rss_bytes,
)
from bench.procs import run_loadgen_groups

__all__ = ["SCENARIOS", "Scenario", "Target", "run_scenario", "sizes"]


@dataclass(frozen=True)
class Target:
    """Where requests go. ``pid`` is the server whose CPU/RSS is measured (tree)."""

    name: str
    host: str
    port: int
    model: str  # model prefix; a scenario's suffix (e.g. "-d20") is appended
    pid: int | None
    key: str = "x"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """One load shape. ``suffix`` selects the upstream's pacing through the model name."""

    name: str
    title: str
    stream: bool = False
    chunks: int = 10
    concurrency: int = 1
    requests: int = 100
    duration: float = 60.0
    warmup: int = 1
    suffix: str = ""
    ramp: float = 0.0
    think: float = 0.0
    stream_every: int = 0
    loadgen_procs: int = 1
    rss_interval: float = 0.25
    timeout: float = 60.0
    api: str = "chat"  # "messages": Anthropic's POST /v1/messages
    model: str = ""  # a model instead of the target's (e.g. the Anthropic-format one)
    # > 0: a probe load generator beside the streams sends a new request (fresh
    # connection, alternately whole and streamed, 10 chunks, no delay) every
    # ``probe_interval`` s from ``probe_after`` s after go until 0.5 s before the end
    # (a quarter of ``duration`` if that is shorter)
    probe_interval: float = 0.0
    probe_after: float = 0.0


_FULL = {
    "a": Scenario("a", "non-streaming, concurrency 1", requests=400, warmup=30),
    "b": Scenario("b", "non-streaming, concurrency 64", concurrency=64, requests=8000,
                  duration=30),
    "c50": Scenario("c50", "streaming 50 chunks, concurrency 64", stream=True, chunks=50,
                    concurrency=64, requests=2000, duration=30),
    "c10": Scenario("c10", "streaming 10 chunks, concurrency 64", stream=True, chunks=10,
                    concurrency=64, requests=5000, duration=30),
    "m50": Scenario("m50", "Messages API passed through, streaming 50 chunks, concurrency 64",
                    stream=True, chunks=50, concurrency=64, requests=2000, duration=30,
                    api="messages", model="bench-anthropic"),
    "m10": Scenario("m10", "Messages API passed through, streaming 10 chunks, concurrency 64",
                    stream=True, chunks=10, concurrency=64, requests=5000, duration=30,
                    api="messages", model="bench-anthropic"),
    "mt50": Scenario("mt50", "Messages API translated to chat, streaming 50 chunks, conc. 64",
                     stream=True, chunks=50, concurrency=64, requests=2000, duration=30,
                     api="messages"),
    "mt10": Scenario("mt10", "Messages API translated to chat, streaming 10 chunks, conc. 64",
                     stream=True, chunks=10, concurrency=64, requests=5000, duration=30,
                     api="messages"),
    "d": Scenario("d", "streaming 100 chunks 20 ms apart, 1,000 open", stream=True,
                  chunks=100, concurrency=1000, requests=0, duration=12, suffix="-d20",
                  ramp=2.0, rss_interval=0.2),
    "p": Scenario("p", "paced: 500 streams of 50 chunks 20 ms apart + a new request every 50 ms",
                  stream=True, chunks=50, concurrency=500, requests=0, duration=12,
                  suffix="-d20", ramp=2.0, warmup=0, rss_interval=0.2, probe_interval=0.05,
                  probe_after=3.0),
    "f": Scenario("f", "soak: mixed load, 32 slots, half streams of 20 chunks 5 ms apart",
                  stream=True, chunks=20, concurrency=32, requests=0, duration=180,
                  suffix="-d5", think=0.02, stream_every=2, rss_interval=3.0),
}

_SMOKE = {
    "a": replace(_FULL["a"], requests=20, warmup=3),
    "b": replace(_FULL["b"], title="non-streaming, concurrency 8", concurrency=8,
                 requests=100),
    "c50": replace(_FULL["c50"], title="streaming 50 chunks, concurrency 8", concurrency=8,
                   requests=24),
    "c10": replace(_FULL["c10"], title="streaming 10 chunks, concurrency 8", concurrency=8,
                   requests=40),
    **{name: replace(_FULL[name], title=_FULL[name].title.replace("concurrency 64",
                                                                   "concurrency 8")
                     .replace("conc. 64", "conc. 8"), concurrency=8, requests=24)
       for name in ("m50", "m10", "mt50", "mt10")},
    "d": replace(_FULL["d"], title="streaming 10 chunks 5 ms apart, 20 open", chunks=10,
                 concurrency=20, duration=1.0, suffix="-d5", ramp=0.2),
    "p": replace(_FULL["p"], title="paced: 20 streams of 10 chunks 5 ms apart + probes",
                 chunks=10, concurrency=20, duration=1.0, suffix="-d5", ramp=0.2,
                 probe_after=0.25),
    "f": replace(_FULL["f"], title="soak: mixed load, 4 slots", concurrency=4, duration=3.0,
                 rss_interval=0.5),
}

SCENARIOS = _FULL


def sizes(smoke: bool, d_streams: int | None = None, soak: float | None = None,
          loadgen_procs: int | None = None, d_delay: int | None = None,
          p_streams: int | None = None) -> dict[str, Scenario]:
    """The scenario table for this run, with command-line overrides applied."""
    table = dict(_SMOKE if smoke else _FULL)
    if p_streams:
        p = table["p"]
        ramp = max(p.ramp, p_streams / 1000)  # connections opened at ≤ 1,000/s
        table["p"] = replace(p, concurrency=p_streams, loadgen_procs=max(1, p_streams // 2500),
                             ramp=ramp, duration=p.duration - p.ramp + ramp,
                             probe_after=p.probe_after - p.ramp + ramp,
                             title=p.title.replace(f"{p.concurrency} streams",
                                                   f"{p_streams:,} streams"))
    if d_delay is not None:
        old = table["d"].suffix.removeprefix("-d")
        table["d"] = replace(table["d"], suffix=f"-d{d_delay}",
                             title=table["d"].title.replace(f"{old} ms", f"{d_delay} ms"))
    if d_streams:
        procs = max(1, d_streams // 2500)
        table["d"] = replace(table["d"], concurrency=d_streams, loadgen_procs=procs,
                             title=table["d"].title.replace("1,000", f"{d_streams:,}"),
                             ramp=max(table["d"].ramp, d_streams / 1000))
    if soak is not None:
        table["f"] = replace(table["f"], duration=soak)
    if loadgen_procs:
        table = {k: replace(v, loadgen_procs=max(v.loadgen_procs, loadgen_procs))
                 for k, v in table.items()}
    return table


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


async def run_scenario(sc: Scenario, target: Target, upstream_pid: int) -> dict[str, Any]:
    """Run ``sc`` against ``target``; return its figures (JSON-ready)."""
    spec = Spec(host=target.host, port=target.port, model=(sc.model or target.model) + sc.suffix,
                api=sc.api,
                key=target.key, stream=sc.stream, chunks=sc.chunks, extra=target.extra,
                concurrency=sc.concurrency, requests=sc.requests, duration=sc.duration,
                warmup=sc.warmup, ramp=sc.ramp, steady_after=sc.ramp, think=sc.think,
                timeout=sc.timeout, stream_every=sc.stream_every)
    groups = [(spec, sc.loadgen_procs)]
    if sc.probe_interval > 0:
        groups.append((replace(spec, model=sc.model or target.model, stream=False, chunks=10,
                               concurrency=1, requests=0, warmup=0, ramp=0.0, steady_after=0.0,
                               think=0.0, stream_every=0, interval=sc.probe_interval,
                               start_after=sc.probe_after,
                               stop_before=min(0.5, sc.duration / 4)), 1))
    pid = target.pid
    rss = RssSampler(pid, sc.rss_interval) if pid else None
    rss_rest = rss_bytes(pid) if pid else None
    marks: dict[str, float] = {}

    def on_go() -> None:
        marks["t0"] = time.perf_counter()
        marks["up0"] = cpu_seconds(upstream_pid)
        marks["busy0"] = machine_busy_seconds()
        if pid:
            marks["cpu0"] = cpu_seconds(pid)
            assert rss is not None
            rss.start()

    results, wall = await run_loadgen_groups(groups, on_go)
    res = results[0]
    probe = results[1] if len(results) > 1 else None
    busy = machine_busy_seconds() - marks["busy0"]
    up_cpu = cpu_seconds(upstream_pid) - marks["up0"]
    cpu = cpu_seconds(pid) - marks["cpu0"] if pid else None
    loadgen_cpu = res.cpu_s + (probe.cpu_s if probe else 0.0)
    ours = up_cpu + loadgen_cpu + (cpu if cpu is not None and pid != upstream_pid else 0.0)
    others = max(0.0, busy - ours)
    if rss is not None:
        await rss.stop()
    n, chunks = res.ok, res.chunks + (probe.chunks if probe else 0)
    streams = n if sc.stream and not sc.stream_every else n // max(sc.stream_every, 1)
    out: dict[str, Any] = {
        "ok": n, "errors": res.errors + (probe.errors if probe else 0),
        "error_samples": res.error_samples + (probe.error_samples if probe else []),
        "wall_s": _r(wall), "req_per_s": _r(n / wall if wall else None, 1),
        "chunks": chunks, "chunks_per_s": _r(chunks / wall if wall and chunks else None, 0),
        "latency_p50_ms": _r(percentile(res.latency_ms, 50)),
        "latency_p99_ms": _r(percentile(res.latency_ms, 99)),
        "latency_mean_ms": _r(sum(res.latency_ms) / len(res.latency_ms)
                              if res.latency_ms else None),
        "ttft_p50_ms": _r(percentile(res.ttft_ms, 50)) if sc.stream else None,
        "ttft_p99_ms": _r(percentile(res.ttft_ms, 99)) if sc.stream else None,
        "chunk_gap_p50_ms": _r(percentile(res.gap_ms, 50)) if res.gap_ms else None,
        "chunk_gap_p99_ms": _r(percentile(res.gap_ms, 99)) if res.gap_ms else None,
        "samples": len(res.latency_ms),
        "server_cpu_s": _r(cpu),
        "cpu_per_req_us": _r(cpu / n * 1e6 if cpu is not None and n else None, 1),
        "cpu_per_stream_us": _r(cpu / streams * 1e6
                                if cpu is not None and sc.stream and streams else None, 1),
        "cpu_per_chunk_us": _r(cpu / chunks * 1e6 if cpu is not None and chunks else None, 2),
        "server_cpu_pct": _r(cpu / wall * 100 if cpu is not None and wall else None, 1),
        "upstream_cpu_s": _r(up_cpu),
        "loadgen_cpu_s": _r(loadgen_cpu),
        "loadgen_cpu_pct": _r(res.cpu_s / res.wall_s * 100 if res.wall_s else None, 1),
        "loadgen_procs": sc.loadgen_procs,
        "machine_busy_pct": _r(busy / wall * 100 if wall else None, 1),
        "others_cpu_pct": _r(others / wall * 100 if wall else None, 1),
        "loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
    }
    if probe is not None:
        first = probe.ttft_ms + probe.latency_ms  # streams' TTFT, whole answers' latency
        out.update({
            "streams": n, "stream_chunks": res.chunks,
            "probe_requests": probe.ok, "probe_errors": probe.errors,
            "probe_chunks": probe.chunks, "probe_loadgen_cpu_s": _r(probe.cpu_s),
            "probe_ttft_p50_ms": _r(percentile(first, 50)),
            "probe_ttft_p99_ms": _r(percentile(first, 99)),
            "probe_ttft_max_ms": _r(max(first) if first else None),
            "probe_stream_ttft_p99_ms": _r(percentile(probe.ttft_ms, 99)),
            "probe_whole_latency_p99_ms": _r(percentile(probe.latency_ms, 99)),
        })
    if rss is not None and rss_rest is not None:
        out["rss_before_mb"] = _r(rss_rest / 2**20, 1)
        out["rss_peak_mb"] = _r(rss.peak / 2**20, 1)
        out["rss_after_mb"] = _r(rss.samples[-1][1] / 2**20, 1)
        out["rss_per_open_stream_kb"] = (
            _r((rss.peak - rss_rest) / sc.concurrency / 1024, 1) if sc.stream else None)
        out["rss_samples"] = [(round(t, 1), round(b / 2**20, 2)) for t, b in rss.samples]
    return out
