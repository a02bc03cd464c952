"""The results table: each figure beside the direct and passthrough figures, the
difference to direct, the ratio to the passthrough, the target.

``rows(results)`` flattens the results JSON into table rows (also stored in the
JSON); ``format_table`` renders them for the terminal and as markdown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["Row", "format_table", "rows", "soak_drift"]


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    direct: float | None
    tollway: float | None
    target: str = ""
    ok: bool | None = None
    passthrough: float | None = None  # the baseline passthrough's figure (bench/passthrough.py)

    @property
    def diff(self) -> float | None:
        if self.direct is None or self.tollway is None:
            return None
        return self.tollway - self.direct

    @property
    def ratio(self) -> float | None:
        """tollway / passthrough."""
        if self.passthrough is None or self.tollway is None or self.passthrough <= 0:
            return None
        return self.tollway / self.passthrough


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _check(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _vs_passthrough(row: Row, times: float) -> Row:
    """``row`` with issue 18's target: at most ``times`` × the passthrough's figure."""
    ratio = row.ratio
    return replace(row, target=f"≤ {times:g}× pt", ok=None if ratio is None else ratio <= times)


def _scenario_rows(label: str, sc: dict[str, Any], direct: dict[str, Any],
                   passthrough: dict[str, Any] | None = None) -> list[Row]:
    """Rows for a–c given the tollway figures ``sc``, the direct ones ``direct`` and the
    baseline passthrough's ``passthrough``.

    With every feature on (label ``e:``) and a passthrough figure, CPU per request and
    fixed CPU per stream are held to issue 18's ≤ 2× the passthrough instead of the
    absolute targets.
    """
    pt = passthrough or {}
    on = label == "e:"
    out: list[Row] = []
    a, da = sc.get("a"), direct.get("a")
    if a:
        for q, limit in (("p50", 0.5), ("p99", 2.0)):
            row = Row(f"{label}a", f"latency {q} ms", _get(da, f"latency_{q}_ms"),
                      a.get(f"latency_{q}_ms"), f"added ≤ {limit}",
                      passthrough=_get(pt, "a", f"latency_{q}_ms"))
            out.append(replace(row, ok=_check(row.diff, limit)))
    b, db = sc.get("b"), direct.get("b")
    if b:
        out.append(Row(f"{label}b", "requests/s", _get(db, "req_per_s"), b.get("req_per_s"),
                       passthrough=_get(pt, "b", "req_per_s")))
        cpu = b.get("cpu_per_req_us")
        row = Row(f"{label}b", "server CPU µs/request", _get(db, "cpu_per_req_us"), cpu,
                  "≤ 300", _check(cpu, 300), passthrough=_get(pt, "b", "cpu_per_req_us"))
        out.append(_vs_passthrough(row, 2) if on and row.passthrough is not None else row)
    for name in ("c50", "c10"):
        c, dc = sc.get(name), direct.get(name)
        if c:
            out.append(Row(f"{label}{name}", "chunks/s", _get(dc, "chunks_per_s"),
                           c.get("chunks_per_s"), passthrough=_get(pt, name, "chunks_per_s")))
            out.append(Row(f"{label}{name}", "server CPU µs/chunk (avg)",
                           _get(dc, "cpu_per_chunk_us"), c.get("cpu_per_chunk_us"),
                           passthrough=_get(pt, name, "cpu_per_chunk_us")))
    m, dm = sc.get("c_marginal"), direct.get("c_marginal")
    if m:
        per_chunk, fixed = m.get("per_chunk_us"), m.get("fixed_per_stream_us")
        out.append(Row(f"{label}c", "marginal CPU µs/chunk", _get(dm, "per_chunk_us"),
                       per_chunk, "≤ 15", _check(per_chunk, 15),
                       passthrough=_get(pt, "c_marginal", "per_chunk_us")))
        row = Row(f"{label}c", "fixed CPU µs/stream", _get(dm, "fixed_per_stream_us"),
                  fixed, "≤ 400", _check(fixed, 400),
                  passthrough=_get(pt, "c_marginal", "fixed_per_stream_us"))
        out.append(_vs_passthrough(row, 2) if on and row.passthrough is not None else row)
    return out


def _paced_rows(p: dict[str, Any]) -> list[Row]:
    """Scenario p: tollway features off (``p``) and all on (``e:p``) beside the passthrough."""
    out: list[Row] = []
    pt = p.get("passthrough") or {}
    for label, fig in (("p", p.get("tollway")), ("e:p", p.get("tollway_all_on"))):
        if not fig:
            continue
        out.append(Row(label, "chunks/s", None, fig.get("chunks_per_s"),
                       passthrough=pt.get("chunks_per_s")))
        out.append(_vs_passthrough(Row(label, "server CPU µs/chunk (paced)", None,
                                       fig.get("cpu_per_chunk_us"),
                                       passthrough=pt.get("cpu_per_chunk_us")), 1.3))
        out.append(Row(label, "server CPU %", None, fig.get("server_cpu_pct"),
                       passthrough=pt.get("server_cpu_pct")))
        out.append(Row(label, "new request TTFT p50 ms", None, fig.get("probe_ttft_p50_ms"),
                       passthrough=pt.get("probe_ttft_p50_ms")))
        out.append(_vs_passthrough(Row(label, "new request TTFT p99 ms", None,
                                       fig.get("probe_ttft_p99_ms"),
                                       passthrough=pt.get("probe_ttft_p99_ms")), 2))
        for q in (50, 99):  # each stream's longest wait between chunks (sent 20 ms apart)
            out.append(Row(label, f"stream's longest chunk gap p{q} ms", None,
                           fig.get(f"chunk_gap_p{q}_ms"),
                           passthrough=pt.get(f"chunk_gap_p{q}_ms")))
        for name, what in (("admitted", "admission"), ("first_token", "first token")):
            for q in (50, 99):
                value = fig.get(f"probe_{name}_p{q}_ms")
                if value is not None:  # from tollway's traces (e:p with traces on)
                    out.append(Row(label, f"new request {what} p{q} ms (traces)", None,
                                   round(value, 1)))
        per = fig.get("rss_per_open_stream_kb")
        out.append(Row(label, "RSS KiB per open stream", None, per, "≤ 20", _check(per, 20),
                       passthrough=pt.get("rss_per_open_stream_kb")))
        rest = fig.get("rss_before_mb")
        out.append(Row(label, "RSS MiB at rest", None, rest, "≤ 64", _check(rest, 64),
                       passthrough=pt.get("rss_before_mb")))
    return out


def soak_drift(samples: list[tuple[float, float]], warmup_fraction: float = 0.2) -> dict[str, Any]:
    """RSS drift after warm-up: last vs first (means of 3 samples) and the spread, in %."""
    if len(samples) < 3:
        return {"note": "too few samples"}
    cut = samples[0][0] + (samples[-1][0] - samples[0][0]) * warmup_fraction
    after = [mb for t, mb in samples if t >= cut] or [samples[-1][1]]
    k = min(3, len(after))
    first, last = sum(after[:k]) / k, sum(after[-k:]) / k
    spread = (max(after) - min(after)) / first * 100
    drift = (last - first) / first * 100
    return {"warmup_s": round(cut - samples[0][0], 1), "first_mb": round(first, 2),
            "last_mb": round(last, 2), "max_mb": round(max(after), 2),
            "drift_pct": round(drift, 2), "spread_pct": round(spread, 2),
            "flat": abs(drift) <= 5 and spread <= 5}


def rows(results: dict[str, Any]) -> list[Row]:
    """All table rows for a results document."""
    sc = results["scenarios"]
    direct = {k: v.get("direct") for k, v in sc.items() if isinstance(v, dict) and "direct" in v}
    tollway = {k: v.get("tollway") for k, v in sc.items() if isinstance(v, dict) and "tollway" in v}
    passthrough = {k: v.get("passthrough") for k, v in sc.items()
                   if isinstance(v, dict) and "passthrough" in v}
    out = _scenario_rows("", tollway, direct, passthrough)
    d, dd = tollway.get("d"), direct.get("d")
    if d:
        for q, limit in (("p50", None), ("p99", 5.0)):
            row = Row("d", f"TTFT {q} ms", _get(dd, f"ttft_{q}_ms"), d.get(f"ttft_{q}_ms"),
                      f"added ≤ {limit}" if limit else "")
            out.append(Row(**{**asdict(row), "ok": _check(row.diff, limit) if limit else None}))
        per = d.get("rss_per_open_stream_kb")
        out.append(Row("d", "RSS KB per open stream", _get(dd, "rss_per_open_stream_kb"), per,
                       "≤ 32", _check(per, 32)))
        rest = d.get("rss_before_mb")
        out.append(Row("d", "RSS MB at rest", _get(dd, "rss_before_mb"), rest, "≤ 80",
                       _check(rest, 80)))
        out.append(Row("d", "server CPU %", _get(dd, "server_cpu_pct"), d.get("server_cpu_pct")))
    for name in ("m50", "m10", "mt50", "mt10"):
        m = tollway.get(name)
        if m:
            out.append(Row(name, "server CPU µs/chunk (avg)", _get(direct, name,
                                                                  "cpu_per_chunk_us"),
                           m.get("cpu_per_chunk_us")))
    chat = _get(sc, "c_marginal", "tollway", "per_chunk_us")
    for side, what in (("tollway", "passed through"), ("translated", "translated")):
        per = _get(sc, "m_marginal", side, "per_chunk_us")
        if per is not None:
            limit = chat * 1.2 if chat is not None else None
            out.append(Row("m", f"marginal CPU µs/chunk, {what}",
                           _get(sc, "m_marginal", "direct", "per_chunk_us"), per,
                           "≤ 1.2 × c's" if limit is not None else "",
                           _check(per, limit) if limit is not None else None))
    e = sc.get("e") or {}
    if e.get("tollway"):
        out += _scenario_rows("e:", e["tollway"], direct, passthrough)
    if sc.get("p"):
        out += _paced_rows(sc["p"])
    f = _get(sc, "f", "drift")
    if f and "drift_pct" in f:
        out.append(Row("f", "RSS drift % after warm-up", None, f["drift_pct"], "within ±5",
                       f["flat"]))
        out.append(Row("f", "RSS MB end of soak", None, f["last_mb"]))
    w = sc.get("workers") or {}
    for n, fig in sorted((k, v) for k, v in w.items() if k.isdigit()):
        out.append(Row("workers", f"b requests/s, {n} worker(s)", _get(direct, "b", "req_per_s"),
                       fig.get("req_per_s")))
        if fig.get("req_per_s") and fig.get("cpu_per_req_us"):
            out.append(Row("workers", f"b requests/s per worker, {n} worker(s)", None,
                           round(fig["req_per_s"] / int(n), 1)))
            out.append(Row("workers", f"b server CPU µs/request, {n} worker(s)", None,
                           fig["cpu_per_req_us"]))
    if "scaling" in w:
        out.append(Row("workers", "scaling 1 → 2 workers (×)", None, w["scaling"]))
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}"


def format_table(table: list[Row], markdown: bool = False) -> str:
    """Render rows; ``ok`` shows as ✓ / ✗ (missed) / blank (no target)."""
    head = ("scenario", "metric", "direct", "passthrough", "tollway", "diff", "× pt", "target",
            "")
    body = [(r.scenario, r.metric, _fmt(r.direct), _fmt(r.passthrough), _fmt(r.tollway),
             ("+" if (r.diff or 0) > 0 else "") + _fmt(r.diff) if r.diff is not None else "–",
             f"{r.ratio:.2f}" if r.ratio is not None else "–",
             r.target, {True: "✓", False: "✗ MISSED", None: ""}[r.ok]) for r in table]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    fmt = "  ".join(f"{{:{'<' if i < 2 or i == 7 else '>'}{w}}}"
                    for i, w in enumerate(widths[:-1]))
    fmt += "  {}"
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines)
