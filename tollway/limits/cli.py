"""Limits on the command line: ``tollway keys create|update … --rpm 60 --tpm 100000
--max-concurrent 4``, ``tollway accounts limits ACCOUNT …``, and limits in ``keys list``.

``extend(subparsers)`` adds them to billing's ``keys``/``accounts`` groups (through the
parser defaults billing's commands call; no import of billing). ``add_flags`` adds the
flags; ``changes(args)`` turns the given ones into a limits update (``none`` removes a
stored value); ``apply``/``describe`` store and read.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from tollway.limits.admin import check_changes, spec_json
from tollway.limits.config import LimitSpec, usd_text
from tollway.limits.rules import Plan
from tollway.limits.store import Scope, get_limits, update_limits
from tollway.storage.sql_caps import read_caps

__all__ = ["add_flags", "apply", "changes", "describe", "extend", "spec_json", "usage"]

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

    usd_str = usd_text
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


# -- the commands -----------------------------------------------------------------


def _database(args: argparse.Namespace) -> str:
    """``--database``, else ``--config``'s (or ``TOLLWAY_CONFIG``'s), else the demo's, as
    billing's commands resolve it."""
    import os

    dsn = getattr(args, "database", None)
    config_path = getattr(args, "config", None) or os.environ.get("TOLLWAY_CONFIG")
    if not dsn and config_path:
        from tollway.config import load_settings

        dsn = load_settings(config_path).database
    if not dsn:
        from tollway.demo import zero_config_database

        dsn = zero_config_database()
    return dsn


def _run(command: Any) -> Any:
    """An argparse ``func`` running ``await command(store, args) -> (json, text)``."""

    def run(args: argparse.Namespace) -> int:
        import asyncio
        import sys

        import orjson

        from tollway.errors import GatewayError
        from tollway.storage import open_storage

        async def go() -> tuple[Any, str]:
            store = await open_storage(_database(args))
            try:
                result: tuple[Any, str] = await command(store, args)
                return result
            finally:
                await store.close()

        try:
            data, text = asyncio.run(go())
        except GatewayError as exc:
            sys.stderr.write(f"tollway: {exc.message}\n")
            return 1
        if args.json:
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(text + ("\n" if text else ""))
        return 0

    return run


def _key_json(key: Any) -> dict[str, Any]:
    return {"id": key.id, "object": "api_key", "account_id": key.account_id,
            "prefix": key.prefix, "name": key.name}  # fmt: skip


async def _keys_update(store: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from tollway.errors import NotFound

    key = await store.get_key(args.key_id)
    if key is None:
        raise NotFound(f"no key {args.key_id!r}")
    await apply(store, "key", key.id, changes(args), args)
    shown, line = await describe(store, key.id, key.account_id)
    return _key_json(key) | shown, f"{key.id}  {line or 'no limits'}"


async def _accounts_limits(store: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from tollway.errors import NotFound

    account = await store.get_account(args.account)
    if account is None:
        raise NotFound(f"no account {args.account!r}")
    spec = await apply(store, "account", account.id, changes(args), args)
    shown = spec_json(spec, set_only=True)
    text = " ".join(f"{k}={v}" for k, v in shown.items()) or "no limits"
    return ({"object": "limits", "scope": "account", "id": account.id, "limits": shown},
            f"{account.id}  {text}")  # fmt: skip


async def _key_created(store: Any, key: Any, args: argparse.Namespace) -> dict[str, Any]:
    change = changes(args)
    if not change and not getattr(args, "model_limits", None):
        return {}
    spec = await apply(store, "key", key.id, change, args)
    return {"limits": spec_json(spec, set_only=True)}


async def _key_listed(store: Any, key: Any) -> tuple[dict[str, Any], str]:
    return await describe(store, key.id, key.account_id)


def _group(subparsers: Any, name: str) -> Any:
    """The subcommand action of an existing command group (``keys``, ``accounts``)."""
    parser = subparsers.choices.get(name)
    if parser is None:
        return None
    for action in parser._actions:  # argparse keeps no public handle on it
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--config", help="YAML config file (its 'database'; or TOLLWAY_CONFIG)")
    p.add_argument("--database", help="sqlite:///PATH or postgresql://… (overrides the config)")
    return p


def extend(subparsers: Any) -> None:
    """Add limits to billing's commands (``keys create … --rpm``, ``keys list``) and add
    ``keys update KEY_ID …`` and ``accounts limits ACCOUNT …``. A no-op without them."""
    keys, accounts = _group(subparsers, "keys"), _group(subparsers, "accounts")
    if keys is not None:
        create = keys.choices.get("create")
        if create is not None:
            add_flags(create)
            create.set_defaults(key_checks=[changes], key_created=[_key_created])
        listing = keys.choices.get("list")
        if listing is not None:
            listing.set_defaults(key_listed=[_key_listed])
        p = _common(keys.add_parser("update", help="set a key's limits (rpm, tpm, caps, models)"))
        p.add_argument("key_id")
        add_flags(p)
        p.set_defaults(func=_run(_keys_update))
    if accounts is not None:
        p = _common(accounts.add_parser(
            "limits", help="set an account's limits (rpm, tpm, caps, models)"))
        p.add_argument("account")
        add_flags(p)
        p.set_defaults(func=_run(_accounts_limits))
