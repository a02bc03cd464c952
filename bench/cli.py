"""``python -m bench``: run the scenarios direct, through the baseline passthrough and
through tollway, print and save.

Phases, each with a freshly started tollway (so RSS figures are not polluted by
earlier phases): a–c; d; e (features on); p (paced streams: passthrough, tollway
features off, tollway all on, each fresh); f (soak); b again with ``--workers N``;
and, opt-in, ``limits`` (tenant controls on vs off, see ``bench/limits.py``).
The direct and passthrough figures of a–c are measured once and reused by e.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench import features, procs
from bench.loadgen import Spec
from bench.measure import marginal_chunk_cost, probe_timings
from bench.pg import PostgresSchemas
from bench.profile import Profiler
from bench.report import format_table, rows, soak_drift
from bench.scenarios import Scenario, Target, run_scenario, sizes

__all__ = ["main"]

ALL = ("a", "b", "c", "m", "d", "e", "p", "f", "workers")
OPT_IN = ("limits",)  # run only when named in --scenarios


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"nproc": os.cpu_count(), "cpu": model, "mem_mb": mem,
            "python": platform.python_version(), "kernel": platform.release()}


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: T201


class Bench:
    """One run: owns the upstream, starts tollway per phase, collects results."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.table = sizes(args.smoke, args.d_streams, args.soak, args.loadgen_procs,
                           args.d_delay, args.p_streams)
        self.delays = tuple(sorted({5, 20, *([args.d_delay] if args.d_delay else [])}))
        self.upstream_port = procs.free_port()
        self.upstream: procs.Server | None = None
        self.results: dict[str, Any] = {"scenarios": {}, "notes": []}
        self.errors = 0
        self.profiler = Profiler(workdir / "profiles") if args.profile else None
        self.available, self.feature_notes = features.detect(
            workdir, (procs.free_port(), self.upstream_port))
        self.postgres = PostgresSchemas(args.postgres) if args.postgres else None
        self.databases: dict[str, str] = {}  # phase → its PostgreSQL schema's URL
        self.features_off: dict[str, Any] = {}
        for feat in self.available:
            self.features_off.update(feat.off)

    @property
    def direct(self) -> Target:
        assert self.upstream is not None
        return Target("direct", "127.0.0.1", self.upstream_port, "bench-upstream",
                      self.upstream.pid)

    def note(self, msg: str) -> None:
        self.results["notes"].append(msg)
        _log("note: " + msg)

    @contextlib.asynccontextmanager
    async def tollway(self, phase: str, workers: int = 1, extra_config: dict[str, Any] | None
                      = None, extra_request: dict[str, Any] | None = None
                      ) -> AsyncIterator[Target]:
        """A fresh tollway (or the --target one), set up and warmed up."""
        if self.args.target:
            url = urlsplit(self.args.target)
            yield Target("tollway", url.hostname or "127.0.0.1", url.port or 80,
                         self.args.target_model, self.args.target_pid,
                         self.args.target_key, extra_request or {})
            return
        port = procs.free_port()
        db: Path | str = self.workdir / f"{phase}.db"
        if self.postgres:
            db = self.databases[phase] = await self.postgres.fresh(phase)
        extra = dict(extra_config if extra_config is not None else self.features_off)
        if self.args.coalesce_ms is not None:
            extra["server"] = {**extra.get("server", {}),
                               "coalesce_under_load_ms": self.args.coalesce_ms}
        if self.args.early_admission is not None:
            extra["server"] = {**extra.get("server", {}),
                               "early_admission": self.args.early_admission}
        config = procs.write_config(self.workdir / f"{phase}.yaml", port, self.upstream_port,
                                    workers, db, extra, self.delays)
        key, key_note = features.setup_key(config)
        if key_note not in self.results["notes"]:
            self.note(key_note)
        server = await asyncio.to_thread(procs.start_tollway, config, port, workers,
                                         self.workdir)
        try:
            target = Target("tollway", "127.0.0.1", port, "bench-model", server.pid, key,
                            extra_request or {})
            await self.warm(target)
            yield target
        finally:
            server.stop()

    @contextlib.asynccontextmanager
    async def passthrough(self, phase: str) -> AsyncIterator[Target | None]:
        """A fresh baseline passthrough (``bench/passthrough.py``), warmed up.

        None with ``--target`` (the bench then compares with whatever runs there).
        """
        if self.args.target:
            yield None
            return
        port = procs.free_port()
        server = await asyncio.to_thread(procs.start_passthrough, port, self.upstream_port,
                                         self.workdir, f"-{phase}")
        try:
            target = Target("passthrough", "127.0.0.1", port, "bench-upstream", server.pid)
            await self.warm(target)
            yield target
        finally:
            server.stop()

    def features_on(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, request fields) of every available feature: scenario e's tollway."""
        config: dict[str, Any] = {}
        request: dict[str, Any] = {}
        chosen = self.args.features
        for feat in self.available:
            if chosen is not None and feat.name not in chosen:
                config.update(feat.off)  # measured with the others, but turned off
                continue
            config.update(feat.config)
            request.update(feat.request)
        if self.args.balance_lease and "billing" in config:
            config["billing"] = {**config["billing"], "balance_lease": True}
        return config, request

    async def warm(self, target: Target) -> None:
        for stream in (False, True):
            spec = Spec(host=target.host, port=target.port, model=target.model, key=target.key,
                        stream=stream, chunks=10, extra=target.extra, concurrency=4,
                        requests=40, warmup=1)
            res, _ = await procs.run_loadgens(spec, 1)
            if res.errors:
                raise RuntimeError(f"warm-up through tollway failed: {res.error_samples}")

    async def run(self, sc: Scenario, target: Target, profile: bool = False,
                  label: str = "") -> dict[str, Any]:
        _log(f"{label}{sc.name} ({sc.title}) → {target.name}")
        if profile and self.profiler and target.pid:
            self.profiler.start(f"{label}{sc.name}-{target.name}", target.pid)
        try:
            out = await run_scenario(sc, target, self.direct.pid or 0)
        finally:
            if profile and self.profiler:
                self.profiler.stop()
        self.errors += out["errors"]
        if out["errors"]:
            _log(f"  {out['errors']} errors: {out['error_samples']}")
        return out

    async def pair(self, names: list[str], target: Target, into: dict[str, Any],
                   with_direct: bool = True, passthrough: Target | None = None) -> None:
        for name in names:
            slot = into.setdefault(name, {})
            if with_direct:
                slot["direct"] = await self.run(self.table[name], self.direct)
            if passthrough is not None:
                slot["passthrough"] = await self.run(self.table[name], passthrough)
            slot["tollway"] = await self.run(self.table[name], target,
                                             profile=name in ("b", "c50"))

    @staticmethod
    def marginal(c50: dict[str, Any] | None, c10: dict[str, Any] | None) -> dict[str, Any]:
        if not c50 or not c10 or c50.get("cpu_per_stream_us") is None \
                or c10.get("cpu_per_stream_us") is None:
            return {}
        per_chunk, fixed = marginal_chunk_cost(c50["cpu_per_stream_us"], 50,
                                               c10["cpu_per_stream_us"], 10)
        return {"per_chunk_us": round(per_chunk, 2), "fixed_per_stream_us": round(fixed, 1)}

    async def phase_abc(self, chosen: set[str]) -> None:
        names = [n for n in ("a", "b", "c50", "c10") if n in chosen or n[0] in chosen]
        if not names:
            return
        sc = self.results["scenarios"]
        async with self.passthrough("abc") as pt, self.tollway("abc") as target:
            await self.pair(names, target, sc, passthrough=pt)
        if "c50" in sc and "c10" in sc:
            sc["c_marginal"] = {
                side: self.marginal(sc["c50"][side], sc["c10"][side])
                for side in ("direct", "passthrough", "tollway") if side in sc["c50"]}

    async def phase_m(self) -> None:
        """The Messages API: passed through (m50, m10) and translated (mt50, mt10)."""
        sc = self.results["scenarios"]
        async with self.tollway("m") as target:
            await self.pair(["m50", "m10"], target, sc)
            await self.pair(["mt50", "mt10"], target, sc, with_direct=False)
        sc["m_marginal"] = {
            "direct": self.marginal(sc["m50"]["direct"], sc["m10"]["direct"]),
            "tollway": self.marginal(sc["m50"]["tollway"], sc["m10"]["tollway"]),
            "translated": self.marginal(sc["mt50"]["tollway"], sc["mt10"]["tollway"]),
        }

    async def phase_d(self) -> None:
        async with self.tollway("d") as target:
            await self.pair(["d"], target, self.results["scenarios"])

    async def phase_e(self, need_direct: bool) -> None:
        available, notes = self.available, self.feature_notes
        entry: dict[str, Any] = {"features": notes}
        self.results["scenarios"]["e"] = entry
        for name, what in notes.items():
            if what != "on":
                self.note(f"e: {name} {what}")
        if not available:
            entry["skipped"] = "no feature exists yet; e not run"
            self.note("e: skipped, no feature exists yet (billing, traces, firewall)")
            return
        config, request = self.features_on()
        names = ["a", "b", "c50", "c10"]
        entry["tollway"] = {}
        db_cpu = self.postgres.server_cpu_s() if self.postgres else None
        async with self.tollway("e", extra_config=config, extra_request=request) as target:
            for name in names:
                entry["tollway"][name] = await self.run(
                    self.table[name], target, profile=name in ("b", "c50"), label="e:")
        if db_cpu is not None and (after := PostgresSchemas.server_cpu_s()) is not None:
            served = sum(entry["tollway"][name].get("ok", 0) for name in names)
            entry["postgres_cpu_per_request_us"] = round((after - db_cpu) / served * 1e6, 1)
            self.note(f"e: the PostgreSQL server used {entry['postgres_cpu_per_request_us']} µs "
                      "of CPU per request of a, b, c50 and c10 (its processes on this machine; "
                      "tollway's start, migrations and warm-up included)")
        entry["tollway"]["c_marginal"] = self.marginal(entry["tollway"]["c50"],
                                                       entry["tollway"]["c10"])
        if need_direct:  # e was asked for without a–c: measure the floor and baseline too
            sc = self.results["scenarios"]
            async with self.passthrough("e") as pt:
                for name in names:
                    slot = sc.setdefault(name, {})
                    slot["direct"] = await self.run(self.table[name], self.direct)
                    if pt is not None:
                        slot["passthrough"] = await self.run(self.table[name], pt)
            if "passthrough" in sc["c50"]:
                sc.setdefault("c_marginal", {})["passthrough"] = self.marginal(
                    sc["c50"]["passthrough"], sc["c10"]["passthrough"])

    async def phase_p(self) -> None:
        """Paced streams with probes: passthrough, tollway off, tollway all on; each fresh."""
        sc = self.table["p"]
        entry: dict[str, Any] = {"features": self.feature_notes}
        self.results["scenarios"]["p"] = entry
        async with self.passthrough("p") as pt:
            if pt is not None:
                entry["passthrough"] = await self.run(sc, pt)
        async with self.tollway("p") as target:
            entry["tollway"] = await self.run(sc, target, profile=True)
        if not self.available:
            self.note("p: all-on run skipped, no feature exists yet")
            return
        config, request = self.features_on()
        async with self.tollway("p-on", extra_config=config, extra_request=request) as target:
            since = time.time()
            entry["tollway_all_on"] = await self.run(sc, target, profile=True, label="e:")
        if (config.get("tracing") or {}).get("enabled") and not self.args.target:
            # the server has stopped and flushed its traces: where the probes waited, in it
            entry["tollway_all_on"].update(
                await self.postgres.probe_timings(self.databases["p-on"], "bench-model", since)
                if self.postgres else
                probe_timings(self.workdir / "p-on.db", "bench-model", since))

    async def phase_f(self) -> None:
        async with self.tollway("f") as target:
            out = await self.run(self.table["f"], target)
        samples = [(t, mb) for t, mb in out.get("rss_samples", [])]
        self.results["scenarios"]["f"] = {"tollway": out, "drift": soak_drift(samples)}

    async def phase_workers(self) -> None:
        entry: dict[str, Any] = {}
        self.results["scenarios"]["workers"] = entry
        if self.args.target:
            entry["skipped"] = "--target given: tollway is not started by the bench"
            self.note("workers: skipped with --target")
            return
        sc = replace(self.table["b"], name="b")
        config, request = self.features_on() if self.args.workers_all_on else (None, None)
        for n in self.args.workers:
            async with self.tollway(f"workers{n}", workers=n, extra_config=config,
                                    extra_request=request) as target:
                entry[str(n)] = await self.run(replace(sc, title=f"{sc.title}, {n} workers"),
                                               target)
        one, two = entry.get("1"), entry.get("2")
        if one and two and one.get("req_per_s"):
            entry["scaling"] = round(two["req_per_s"] / one["req_per_s"], 2)

    async def main(self) -> dict[str, Any]:
        chosen = set(self.args.scenarios)
        self.results.update({
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "mode": "smoke" if self.args.smoke else "full",
            "sizes": {k: asdict(v) for k, v in self.table.items()},
            "nofile_limit": procs.raise_nofile(),
        })
        self.upstream = await asyncio.to_thread(procs.start_upstream, self.upstream_port,
                                                self.workdir)
        try:
            await self.phase_abc(chosen)
            if "m" in chosen:
                await self.phase_m()
            if "d" in chosen:
                await self.phase_d()
            if "e" in chosen:
                await self.phase_e(need_direct=not ({"a", "b", "c"} <= chosen))
            if "p" in chosen:
                await self.phase_p()
            if "f" in chosen:
                await self.phase_f()
            if "workers" in chosen:
                await self.phase_workers()
            if "limits" in chosen:
                from bench.limits import phase_limits

                await phase_limits(self)
        finally:
            self.upstream.stop()
            if self.postgres and self.args.keep:
                for phase, url in self.databases.items():
                    self.note(f"kept PostgreSQL schema of {phase}: {url}")
            elif self.postgres:
                await self.postgres.drop_all()
        if self.profiler:
            self.results["profiles"] = self.profiler.details()
        self.results["errors"] = self.errors
        from bench.limits import limit_rows

        table = rows(self.results) + limit_rows(self.results)
        self.results["table"] = [{**asdict(r), "diff": r.diff, "ratio": r.ratio} for r in table]
        return self.results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny counts; CI mode (< 1 minute)")
    p.add_argument("--out", default="bench-results/latest.json", help="JSON results file")
    p.add_argument("--scenarios", type=lambda s: s.split(","), default=list(ALL),
                   help=f"comma-separated subset of {','.join(ALL)} (default: all), "
                   f"or opt-in {','.join(OPT_IN)}")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                   help="Redis for the limits phase (default redis://127.0.0.1:6379/0)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts for the scaling run of scenario b (default: 1 2)")
    p.add_argument("--workers-all-on", action="store_true",
                   help="the workers run with every feature on, as e (with --features, "
                   "--balance-lease and --postgres as given)")
    p.add_argument("--soak", type=float, help="soak duration in seconds (default 180)")
    p.add_argument("--d-streams", type=int, help="open streams in d (default 1000; try 10000)")
    p.add_argument("--d-delay", type=int, help="ms between chunks in d (default 20)")
    p.add_argument("--p-streams", type=int,
                   help="paced streams held open in p (default 500; up to 8000 on this machine)")
    p.add_argument("--loadgen-procs", type=int, help="load generator processes (default 1)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy record tollway during b, c50 and p (perturbs their figures)")
    p.add_argument("--target", help="use an already running tollway at this URL")
    p.add_argument("--target-pid", type=int, help="its pid, to measure CPU and RSS")
    p.add_argument("--target-model", default="bench-model", help="model alias at --target")
    p.add_argument("--target-key", default="x", help="API key for --target")
    p.add_argument("--features", type=lambda s: [f for f in s.split(",") if f],
                   help="scenario e and e:p with only these of billing,traces,firewall on "
                        "(the others off); default: all")
    p.add_argument("--balance-lease", action="store_true",
                   help="e and e:p with billing.balance_lease on (admission from memory)")
    p.add_argument("--early-admission", choices=["under_load", "always", "never"],
                   default=None, help="tollway's server.early_admission in every phase "
                                      "(default: tollway's default, under_load)")
    p.add_argument("--coalesce-ms", type=float, default=None, metavar="MS",
                   help="tollway's server.coalesce_under_load_ms in every phase (default: "
                        "tollway's default; 0 turns coalescing off)")
    p.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test",
                   metavar="URL", help="tollway's database on PostgreSQL (a fresh schema per "
                   "phase, dropped after) instead of a SQLite file; default URL "
                   "postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--keep", action="store_true",
                   help="keep the work dir (configs, logs) and --postgres's schemas")
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(ALL) - set(OPT_IN) - {"c50", "c10"}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    known = {feat.name for feat in features.FEATURES}
    if args.features is not None and set(args.features) - known:
        p.error(f"unknown features: {', '.join(sorted(set(args.features) - known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    try:
        bench = Bench(args, workdir)
        results = asyncio.run(bench.main())
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    m = results["machine"]
    print(f"\ntollway benchmark ({results['mode']}) — {m['nproc']} × {m['cpu']}, "  # noqa: T201
          f"Python {m['python']}\n")
    from bench.limits import limit_rows

    print(format_table(rows(results) + limit_rows(results)))  # noqa: T201
    for note in results["notes"]:
        print(f"note: {note}")  # noqa: T201
    if "profiles" in results:
        for name, prof in results["profiles"].items():
            print(f"\nprofile {name}: {prof.get('samples')} samples, "  # noqa: T201
                  f"{prof.get('in_tollway_pct')}% under tollway frames; "
                  "top tollway frames (self % / inclusive %)")
            for frame in prof["frames"][:12]:
                print(f"  {frame['self_pct']:5.1f}% {frame['total_pct']:5.1f}%  "  # noqa: T201
                      f"{frame['frame']}")
            print("  deepest tollway frame → what it calls:")  # noqa: T201
            for pair in prof.get("callees", [])[:8]:
                print(f"  {pair['pct']:5.1f}%  {pair['frame']} → {pair['calls']}")  # noqa: T201
    print(f"\nverification errors: {results['errors']}; JSON: {out}"  # noqa: T201
          + (f"; work dir kept: {workdir}" if args.keep else ""))
    return 1 if results["errors"] else 0
