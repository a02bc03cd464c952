"""``tollway traces [ID] [--json]``: read traces straight from the database.

Without an id: the newest traces as a table (filters: --model, --status,
--account, --since, --until, --limit). With an id: that trace in detail. The
database comes from --database, else --config's ``tracing.database`` or
``database``, else ``TOLLWAY_DATABASE``, else the demo's ``sqlite:///tollway-demo.db``
(the zero-config default, shared with ``tollway serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TextIO

import orjson

from tollway.errors import InvalidRequest
from tollway.tracing.api import build_query
from tollway.tracing.store import open_trace_store

__all__ = ["format_detail", "format_table", "register", "run"]

_COLUMNS = ("RECEIVED", "REQUEST ID", "ACCOUNT", "MODEL", "DEPLOYMENT", "STATUS", "TTFT",
            "TOTAL", "TOKENS IN/OUT", "COST USD")


def register(subparsers: Any) -> None:
    """Add ``traces`` to the ``tollway`` command's subparsers."""
    p = subparsers.add_parser("traces", help="show recent traces, or one trace by request id")
    p.add_argument("id", nargs="?",
                   help="tollway's request id (X-Tollway-Request-Id) or the client's X-Request-Id")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML config file (or TOLLWAY_CONFIG)")
    where.add_argument("--database", help="DSN: sqlite:///PATH or postgresql://…")
    p.add_argument("--model", help="only this requested model")
    p.add_argument("--status", help="200, 4xx, ok or error")
    p.add_argument("--account", help="only this account id")
    p.add_argument("--since", help="Unix seconds or ISO 8601")
    p.add_argument("--until", help="Unix seconds or ISO 8601")
    p.add_argument("--limit", type=int, default=20, help="rows (1-100, default 20)")
    p.set_defaults(func=run)


def _database(args: argparse.Namespace) -> str:
    if args.database:
        return str(args.database)
    path = args.config or os.environ.get("TOLLWAY_CONFIG")
    if path:
        from tollway.config import load_settings

        settings = load_settings(path)
        tracing = getattr(settings, "tracing", None)
        return str(getattr(tracing, "database", None) or settings.database)
    from tollway.demo import zero_config_database

    return zero_config_database()


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _row(t: dict[str, Any]) -> tuple[str, ...]:
    usage = t.get("usage") or {}
    timings = t.get("timings") or {}
    status = str(t.get("status"))
    if t.get("client_disconnected"):
        status += " (gone)"
    return (
        str(t.get("received", ""))[:23].replace("T", " "),
        str(t["id"]),
        str(t.get("account_id") or "-"),
        str(t.get("model") or "-"),
        str(t.get("deployment") or "-"),
        status,
        _ms(timings.get("ttft_ms")),
        _ms(timings.get("total_ms")),
        f"{usage.get('prompt_tokens', '-')}/{usage.get('completion_tokens', '-')}",
        str((t.get("cost") or {}).get("total_cost_usd") or "-"),
    )


def format_table(traces: list[dict[str, Any]]) -> str:
    """Aligned columns, one trace per line."""
    rows = [_COLUMNS, *(_row(t) for t in traces)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def format_detail(t: dict[str, Any]) -> str:
    """One trace as labelled lines: route attempts, verdicts, tools, then the bodies if stored."""
    usage = t.get("usage") or {}
    timings = t.get("timings") or {}
    error = t.get("error") or {}
    lines = [
        f"request      {t['id']}",
        f"received     {t.get('received')}",
        f"account      {t.get('account_id') or '-'}   key {t.get('key_id') or '-'}",
        f"model        {t.get('model')} -> {t.get('deployment') or '-'}"
        f" ({t.get('served_model') or '-'})",
        f"stream       {t.get('stream')}",
        f"status       {t.get('status')}"
        + (f"  error {error.get('code')}: {error.get('message')}" if error else ""),
        f"finish       {t.get('finish_reason') or '-'}"
        + ("  CLIENT DISCONNECTED" if t.get("client_disconnected") else "")
        + ("  partial" if t.get("partial") else ""),
        "timings      " + "  ".join(
            f"{name} {_ms(timings.get(name + '_ms'))}"
            for name in ("admitted", "upstream_connected", "first_token", "last_token", "total")
        ),
        f"speed        {timings.get('output_tokens_per_second') or '-'} output tokens/s",
        f"tokens       in {usage.get('prompt_tokens', '-')}  out "
        f"{usage.get('completion_tokens', '-')}  cached {usage.get('cached_tokens', '-')}"
        f"  reasoning {usage.get('reasoning_tokens', '-')}",
        "cost         " + ("  ".join(f"{k} {v}" for k, v in (t.get("cost") or {}).items()) or "-"),
    ]
    for a in t.get("attempts") or ():
        lines.append(f"attempt      {a['deployment']}: {a['outcome']} {a.get('status') or ''}"
                     f" {a['latency_ms']:.0f}ms {a.get('error') or ''}".rstrip())
    for v in t.get("firewall_verdicts") or ():
        lines.append(f"firewall     {orjson.dumps(v, default=str).decode()}")
    for c in t.get("tool_calls") or ():
        lines.append(f"tool         {c.get('name')} {c.get('error') or 'ok'}")
    bodies = t.get("bodies")
    if bodies:  # stored only for accounts that opt in (tracing.store_bodies)
        for name in ("request", "response"):
            lines.append(f"{name:<13}{orjson.dumps(bodies.get(name), default=str).decode()}")
    return "\n".join(lines)


async def _fetch(args: argparse.Namespace) -> Any:
    store = await open_trace_store(_database(args))
    try:
        if args.id:
            return await store.get(args.id, None)
        query = {k: str(v) for k, v in (
            ("model", args.model), ("status", args.status), ("account_id", args.account),
            ("since", args.since), ("until", args.until), ("limit", args.limit),
        ) if v is not None}
        return [t for _seq, t in await store.find(build_query(query, account_id=None, admin=True))]
    finally:
        await store.close()


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Entry point of ``tollway traces``; returns the exit status."""
    out = out or sys.stdout
    try:
        result = asyncio.run(_fetch(args))
    except (InvalidRequest, ValueError) as exc:
        sys.stderr.write(f"tollway traces: {getattr(exc, 'message', exc)}\n")
        return 2
    if args.id and result is None:
        sys.stderr.write(f"no trace with id {args.id}\n")
        return 1
    if args.json:
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.id:
        out.write(format_detail(result) + "\n")
    else:
        out.write(format_table(result) + "\n")
    return 0
