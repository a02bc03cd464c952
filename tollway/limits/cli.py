"""CLI flags for limits: ``tollway keys create|update … --rpm 60 --tpm 100000 --max-concurrent 4``.

``add_flags(parser)`` adds them; ``changes(args)`` turns the given ones into a
limits update (``none`` removes a stored value); ``apply``/``show`` store and read.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from tollway.limits.admin import check_changes, spec_json
from tollway.limits.config import LimitSpec
from tollway.limits.rules import Plan
from tollway.limits.store import Scope, get_limits, update_limits
from tollway.storage.sql_caps import read_caps

__all__ = ["add_flags", "apply", "changes", "describe", "spec_json", "usage"]

_NONE = ("none", "off", "null")


def _count(text: str) -> int | None:
    if text.lower() in _NONE:
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 10**12:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} must be a whole number from 1 to 1e12, "
                                         "or none")  # fmt: skip
    return int(text)


def _usd(text: str) -> str | None:
    if text.lower() in _NONE:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} must be an amount of USD") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} must be an amount of USD ≥ 0")
    return text


def _models(text: str) -> list[str] | None:
    if text.lower() in _NONE:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--rpm", "rpm", _count, "requests per minute (none: remove)"),
    ("--tpm", "tpm", _count, "tokens per minute, prompt + output (none: remove)"),
    ("--max-concurrent", "max_concurrent", _count, "requests in flight at once (none: remove)"),
    ("--models", "models", _models, "comma-separated glob patterns of allowed model aliases"),
    ("--spend-cap", "spend_cap_usd", _usd, "USD per --spend-period (none: remove)"),
]


def _model_limit(text: str) -> tuple[str, dict[str, int] | None]:
    """``ALIAS:rpm=10,tpm=5000,max_concurrent=2`` (or ``ALIAS:none``) → (alias, limits)."""
    alias, sep, rest = text.partition(":")
    if not sep or not alias.strip():
        raise argparse.ArgumentTypeError(f"{text[:64]!r} must be ALIAS:rpm=N,tpm=N,max_concurrent=N"
                                         " or ALIAS:none")  # fmt: skip
    if rest.strip().lower() in _NONE:
        return alias.strip(), None
    out: dict[str, int] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or name not in ("rpm", "tpm", "max_concurrent"):
            raise argparse.ArgumentTypeError(
                f"{part[:64]!r}: want rpm=N, tpm=N or max_concurrent=N")
        count = _count(value.strip())
        if count is None:
            raise argparse.ArgumentTypeError(f"{part[:64]!r}: want a whole number from 1 to 1e12")
        out[name] = count
    return alias.strip(), out


def add_flags(p: argparse.ArgumentParser) -> None:
    for flag, dest, kind, text in _FLAGS:
        p.add_argument(flag, dest=f"limit_{dest}", type=kind, default=argparse.SUPPRESS,
                       help=text)  # fmt: skip
    p.add_argument("--spend-period", dest="limit_spend_period", default=argparse.SUPPRESS,
                   choices=["daily", "weekly", "monthly", "total"],
                   help="spend cap period (UTC; default monthly)")  # fmt: skip
    p.add_argument("--model-limit", dest="model_limits", type=_model_limit, action="append",
                   default=argparse.SUPPRESS, metavar="ALIAS:rpm=N,tpm=N,max_concurrent=N",
                   help="rate limits on one model alias (repeatable; ALIAS:none removes them)")


def changes(args: argparse.Namespace) -> dict[str, Any]:
    """The limit flags given on the command line, validated (a ValueError-free dict)."""
    out = {
        name.removeprefix("limit_"): value
        for name, value in vars(args).items()
        if name.startswith("limit_")
    }
    return check_changes(out)


async def merge_model_limits(
    store: Any, scope: Scope, subject: str, args: argparse.Namespace, change: dict[str, Any]
) -> dict[str, Any]:
    """``change`` plus ``per_model`` from ``--model-limit`` flags, merged into the stored."""
    given = getattr(args, "model_limits", None)
    if not given:
        return change
    stored = await get_limits(store.db, scope, subject)
    per_model = {k: v.model_dump(exclude_none=True)
                 for k, v in (stored.per_model if stored else {}).items()}  # fmt: skip
    for alias, limits in given:
        if limits is None:
            per_model.pop(alias, None)
        else:
            per_model[alias] = {**per_model.get(alias, {}), **limits}
    return {**change, **check_changes({"per_model": per_model or None})}


async def apply(
    store: Any, scope: Scope, subject: str, change: dict[str, Any],
    args: argparse.Namespace | None = None,
) -> LimitSpec:
    """Store the flags' changes (with ``--model-limit``s when ``args`` is given)."""
    if args is not None:
        change = await merge_model_limits(store, scope, subject, args, change)
    return await update_limits(store.db, scope, subject, change)


async def usage(store: Any, key_id: str, account_id: str, spec: LimitSpec) -> dict[str, Any]:
    """This period's spend of the key's own cap (if any)."""
    import time

    from tollway.billing.pricing import usd_str

    plan = Plan(key_id, account_id, spec, LimitSpec())
    caps = plan.caps(time.time())
    if not caps:
        return {}
    async with store.db.transaction() as tx:
        (state,) = await read_caps(tx, caps)
    return {"period": state.cap.period, "spent_usd": usd_str(state.spent_micros),
            "reserved_usd": usd_str(state.reserved_micros),
            "remaining_usd": usd_str(state.remaining_micros)}  # fmt: skip


async def describe(store: Any, key_id: str, account_id: str) -> tuple[dict[str, Any], str]:
    """A key's stored limits and this period's spend: (JSON, one-line text)."""
    spec = await get_limits(store.db, "key", key_id)
    shown = spec_json(spec, set_only=True)
    spent = await usage(store, key_id, account_id, spec) if spec is not None else {}
    parts = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in shown.items()
             if k != "per_model"]  # fmt: skip
    for alias, rates in shown.get("per_model", {}).items():
        parts.append(f"{alias}:" + ",".join(f"{k}={v}" for k, v in rates.items()))
    if spent:
        parts.append(f"spent ${spent['spent_usd']} this {spent['period']} period")
    return {"limits": shown, "usage": spent}, " ".join(parts)
