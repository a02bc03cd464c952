"""``python -m bench.apis``: tollway's CPU per request for the Responses API and embeddings,
beside chat completions, against the benchmark's fake upstream.

Each case sends ``--requests`` requests (``--concurrency`` at a time, after a warm-up) to
a tollway started with the benchmark's config, and reports tollway's CPU (user+system,
process tree) per request, and per streamed event for the streamed cases:

==============  =============================================================
chat            ``POST /v1/chat/completions``, 10 tokens, not streamed
chat-stream     the same, streamed (10 content chunks)
responses       ``POST /v1/responses`` translated onto the same chat upstream
responses-sse   the same, streamed (Responses events: ~16 for 10 chunks)
embeddings      ``POST /v1/embeddings``, one input (passed through)
==============  =============================================================

Prints a table and writes ``bench-results/apis.json``. A quick figure, not the
full benchmark (no direct baseline: the upstream costs the same in every case).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.measure import cpu_seconds
from bench.procs import ROOT, free_port, start_tollway, start_upstream, write_config

CASES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "chat": ("/v1/chat/completions", {"model": "bench-model", "max_tokens": 10,
                                      "messages": [{"role": "user", "content": "hi"}]}, False),
    "chat-stream": ("/v1/chat/completions", {"model": "bench-model", "max_tokens": 10,
                                             "stream": True,
                                             "messages": [{"role": "user", "content": "hi"}]},
                    True),
    "responses": ("/v1/responses", {"model": "bench-model", "max_output_tokens": 10,
                                    "input": "hi"}, False),
    "responses-sse": ("/v1/responses", {"model": "bench-model", "max_output_tokens": 10,
                                        "input": "hi", "stream": True}, True),
    "embeddings": ("/v1/embeddings", {"model": "bench-embed", "input": "hi",
                                      "encoding_format": "float"}, False),
}  # fmt: skip


async def _run(url: str, path: str, body: dict[str, Any], n: int, conc: int,
               stream: bool) -> tuple[int, int]:  # fmt: skip
    """(failures, events seen)."""
    payload = orjson.dumps(body)
    failures = events = 0
    left = n

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures, events, left
        while left > 0:
            left -= 1
            async with session.post(url + path, data=payload,
                                    headers={"Content-Type": "application/json"}) as r:
                raw = await r.read()
                if r.status != 200:
                    failures += 1
                elif stream:
                    events += raw.count(b"data: ")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:
        await asyncio.gather(*(worker(session) for _ in range(conc)))
    return failures, events


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.apis")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="tollway-bench-apis-"))
    up_port, port = free_port(), free_port()
    upstream = start_upstream(up_port, logdir)
    config = write_config(logdir / "apis.json", port, up_port, 1, logdir / "t.db", extra={
        "billing": {"enabled": False},
        "models": {"bench-embed": {"deployments": [{
            "provider": "up", "model": "bench-embed", "apis": ["chat", "embeddings"],
            "prices": {"input_per_mtok": 1, "output_per_mtok": 0}}]}},
    })  # fmt: skip
    tollway = start_tollway(config, port, 1, logdir)
    url = f"http://127.0.0.1:{port}"
    rows: dict[str, dict[str, Any]] = {}
    try:
        for name, (path, body, stream) in CASES.items():
            asyncio.run(_run(url, path, body, 50, 4, stream))  # warm-up
            cpu0, t0 = cpu_seconds(tollway.pid), time.perf_counter()
            fails, events = asyncio.run(_run(url, path, body, args.requests, args.concurrency,
                                             stream))  # fmt: skip
            cpu = cpu_seconds(tollway.pid) - cpu0
            wall = time.perf_counter() - t0
            rows[name] = {
                "requests": args.requests, "failures": fails,
                "cpu_us_per_request": round(cpu / args.requests * 1e6, 1),
                "cpu_us_per_event": round(cpu / events * 1e6, 2) if events else None,
                "events_per_request": round(events / args.requests, 1) if stream else None,
                "requests_per_second": round(args.requests / wall, 1),
            }  # fmt: skip
    finally:
        tollway.stop()
        upstream.stop()
    lines = [f"{'case':<14} {'cpu µs/req':>11} {'cpu µs/event':>13} {'events/req':>11} "
             f"{'req/s':>8} {'fail':>5}"]
    for name, r in rows.items():
        lines.append(f"{name:<14} {r['cpu_us_per_request']:>11} "
                     f"{r['cpu_us_per_event'] or '-':>13} {r['events_per_request'] or '-':>11} "
                     f"{r['requests_per_second']:>8} {r['failures']:>5}")
    print("\n".join(lines))  # noqa: T201
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "apis.json").write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
