"""Instructions per request, counted by valgrind: a figure that does not move with the machine.

Times on a shared 2-vCPU machine move by a fifth between identical runs, more than most
single changes to the request path save. Counting instructions does not: callgrind counts
every instruction the process runs, whatever else the machine is doing (features off, two
identical runs differ by well under 0.1 %; what waits on the clock, a group commit's window
or traces' batches, moves a run by up to 2–3 %: compare runs made alike).

``python -m bench.instructions [--features off,on,billing,traces,firewall] [--kinds
whole,stream] [--requests 50 150] [--concurrency 1] [--jobs 2]`` starts the bench's upstream;
for each feature set and kind of request it runs ``tollway serve`` (uvicorn, httptools, the
app: the whole server) under ``valgrind --tool=callgrind`` twice, sends the first count of
requests to one and the second to the other (after the same warm-up), stops both and takes
the difference of their totals over the difference of the counts: start-up, warm-up and
shutdown cancel out. Requests go one at a time by default on one kept-alive connection (the
loop's behaviour is then the same in both runs); ``--concurrency N`` keeps N connections
busy, where group commits and batching depend on timing and the figure on the run (less
exact). The client is this process, outside valgrind: only the server's instructions count.

``whole``: the bench's non-streaming request (``max_tokens`` 10); ``stream``: the same,
streamed with usage (10 content chunks). Feature sets as in scenario e (``bench.features``):
``off`` all off, ``on`` all on (``strict-block`` named in the request), or one feature alone;
``pt`` is the thinnest passthrough (``bench.passthrough``), the issue's baseline, beside which
each figure's ratio is printed when it is measured in the same run.
Slow: each run starts tollway under valgrind (≈ 1 minute); ``--jobs`` runs that many at once.
Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.features import FEATURES, setup_key
from bench.procs import ROOT, free_port, start_upstream, write_config

__all__ = ["PASSTHROUGH", "collected", "main", "per_request", "request_bytes"]

PASSTHROUGH = "pt"
_COLLECTED = re.compile(rb"==\d+== Collected : (\d+)")
_WARM = 30


def collected(valgrind_log: bytes) -> int:
    """The instruction total callgrind printed when the process ended."""
    found = _COLLECTED.findall(valgrind_log)
    if not found:
        tail = valgrind_log[-800:].decode(errors="replace")
        raise RuntimeError(f"callgrind printed no total: {tail}")
    return int(found[-1])


def per_request(counts: tuple[int, int], totals: tuple[int, int]) -> float:
    """Instructions per request from two runs' request counts and totals."""
    (n1, n2), (t1, t2) = counts, totals
    if n2 <= n1:
        raise ValueError("the second run must send more requests than the first")
    return (t2 - t1) / (n2 - n1)


def request_bytes(key: str, stream: bool, extra: dict[str, Any],
                  model: str = "bench-model") -> bytes:
    """The bench's request (as ``bench.loadgen`` sends it), kept alive."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say a few words."}],
        "max_tokens": 10,
        "stream": stream,
        **extra,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    data = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _send(port: int, payload: bytes, count: int) -> None:
    """``count`` requests one after another on one connection; each must answer 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.connect()
    assert conn.sock is not None
    for _ in range(count):
        conn.sock.sendall(payload)
        resp = http.client.HTTPResponse(conn.sock, method="POST")
        resp.begin()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"tollway answered {resp.status}: {body[:300]!r}")
    conn.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server accepts connections (a bare connect every second: no request, so
    the polls cost the server almost nothing whatever their number)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tollway under valgrind exited: {log.read_bytes()[-1500:]!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError("tollway under valgrind did not start within 10 minutes")


def count_run(server: list[str], port: int, payload: bytes, requests: int, concurrency: int,
              workdir: Path, tag: str) -> int:
    """Start ``server`` (a ``python -m`` command line) under callgrind, send the warm-up
    and ``requests``, stop it: its instruction total."""
    log = workdir / f"valgrind-{tag}.log"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", *server]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            _wait_listening(port, proc, log)
            _send(port, payload, _WARM)
            threads = [threading.Thread(target=_send, args=(port, payload, share))
                       for share in _shares(requests, concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            os.killpg(proc.pid, signal.SIGINT)  # uvicorn's graceful stop: callgrind's totals
            proc.wait(600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return collected(log.read_bytes())


def _shares(requests: int, concurrency: int) -> list[int]:
    n = max(1, min(concurrency, requests))
    return [requests // n + (i < requests % n) for i in range(n)]


def _feature_sets(names: list[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name → (config fragment, request fields); ``pt`` (the passthrough) has neither."""
    sets: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name in names:
        if name == PASSTHROUGH:
            sets[name] = ({}, {})
            continue
        if name not in ("on", "off") and name not in {f.name for f in FEATURES}:
            raise SystemExit(f"unknown feature set {name!r}")
        config: dict[str, Any] = {}
        request: dict[str, Any] = {}
        for feat in FEATURES:
            if name == "on" or feat.name == name:
                config.update(feat.config)
                request.update(feat.request)
            else:
                config.update(feat.off)
        sets[name] = (config, request)
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", type=lambda s: s.split(","), default=["off", "on"])
    p.add_argument("--kinds", type=lambda s: s.split(","), default=["whole", "stream"])
    p.add_argument("--requests", type=int, nargs=2, default=[50, 150], metavar=("N1", "N2"))
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="valgrind runs at once (default 2)")
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)  # noqa: T201
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tollway-instructions-"))
    upstream = start_upstream(free_port(), workdir)
    jobs: list[tuple[str, str, int, list[str], int, bytes]] = []
    try:
        for name, (fragment, fields) in _feature_sets(args.features).items():
            for kind in args.kinds:
                for n in args.requests:
                    port = free_port()
                    tag = f"{name}-{kind}-{n}"
                    if name == PASSTHROUGH:
                        server = ["bench.passthrough", "--port", str(port), "--upstream",
                                  f"http://127.0.0.1:{upstream.port}"]
                        payload = request_bytes("x", kind == "stream", fields,
                                                model="bench-upstream")
                    else:
                        config = write_config(workdir / f"{tag}.yaml", port, upstream.port, 1,
                                              workdir / f"{tag}.db", fragment)
                        key, _ = setup_key(config)
                        server = ["tollway", "serve", "--config", str(config)]
                        payload = request_bytes(key, kind == "stream", fields)
                    jobs.append((name, kind, n, server, port, payload))
        totals: dict[tuple[str, str, int], int] = {}
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {
                pool.submit(count_run, server, port, payload, n, args.concurrency, workdir,
                            f"{name}-{kind}-{n}"): (name, kind, n)
                for name, kind, n, server, port, payload in jobs
            }
            for fut in concurrent.futures.as_completed(futures):
                totals[futures[fut]] = fut.result()
                print(f"[instructions] {futures[fut]} done", file=sys.stderr)  # noqa: T201
    finally:
        upstream.stop()
    n1, n2 = args.requests
    results: dict[str, dict[str, float]] = {}
    print(f"\ninstructions per request (callgrind; {n2} − {n1} requests, "  # noqa: T201
          f"{args.concurrency} at a time)")
    for name in args.features:
        for kind in args.kinds:
            value = per_request((n1, n2), (totals[name, kind, n1], totals[name, kind, n2]))
            results.setdefault(name, {})[kind] = round(value)
    for name, kinds in results.items():
        for kind, value in kinds.items():
            base = results.get(PASSTHROUGH, {}).get(kind)
            ratio = f"  {value / base:5.2f}× pt" if base and name != PASSTHROUGH else ""
            print(f"  {name:<9} {kind:<7} {value:>12,}{ratio}")  # noqa: T201
    if args.out:
        Path(args.out).write_text(json.dumps({"requests": [n1, n2],
                                              "concurrency": args.concurrency,
                                              "per_request": results}, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
