"""Billing commands: accounts, keys, credit, ledger, audit, db upgrade (each with ``--json``).

``register(subparsers)`` adds them to the ``tollway`` argparse CLI; each leaf
sets ``func(args) -> int`` (the exit code). The database comes from
``--database``, else ``--config``'s ``database``, else ``TOLLWAY_CONFIG``, else
``TOLLWAY_DATABASE``, else the demo's ``sqlite:///tollway-demo.db`` (the zero-config
default, shared with ``tollway serve``: a key made here works against the demo).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

import orjson

from tollway.auth import KeyAuthenticator, epoch_seconds, key_json, parse_expiry
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.inputs import check_decimal
from tollway.billing.ledger import (
    account_json,
    create_account,
    credit,
    entry_json,
    require_account,
)
from tollway.billing.pricing import usd_str
from tollway.bounds import INT64_MAX, MAX_FEE_FRACTION, MAX_MONEY_USD
from tollway.demo import zero_config_database
from tollway.errors import GatewayError
from tollway.storage import open_storage
from tollway.storage.base import Conflict
from tollway.storage.migrate import upgrade
from tollway.storage.sql import SqlStorage

__all__ = ["register", "resolve_database"]

Command = Callable[[SqlStorage, BillingConfig, argparse.Namespace], Awaitable[tuple[Any, str]]]


def resolve_database(args: argparse.Namespace) -> tuple[str, BillingConfig]:
    """The DSN and billing settings the command should use."""
    config_path = getattr(args, "config", None) or os.environ.get("TOLLWAY_CONFIG")
    billing = BillingConfig()
    dsn = getattr(args, "database", None)
    if config_path:
        from tollway.config import load_settings

        settings = load_settings(config_path)
        billing = getattr(settings, "billing", None) or billing
        dsn = dsn or settings.database
    return dsn or zero_config_database(), billing


def _checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from a check that raises ValueError("must ...")."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text[:64]!r} {exc}") from None

    convert.__name__ = check.__name__  # argparse names the type in its messages
    return convert


def usd(text: str) -> Decimal:
    return check_decimal(text, low=-MAX_MONEY_USD, high=MAX_MONEY_USD, what="an amount of USD")


def usd_fee(text: str) -> Decimal:
    return check_decimal(text, low=Decimal(0), high=MAX_MONEY_USD, what="an amount of USD")


def fraction(text: str) -> Decimal:
    return check_decimal(text, low=Decimal(0), high=MAX_FEE_FRACTION,
                         what="a fraction such as 0.05")  # fmt: skip


def entry_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= INT64_MAX:
        raise ValueError(f"must be a ledger entry id (1 to {INT64_MAX})")
    return int(text)


def page_size(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise ValueError("must be a whole number from 1 to 10000")
    return int(text)


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        dsn, billing = resolve_database(args)

        async def go() -> tuple[Any, str, int]:
            store = await open_storage(dsn)
            try:
                data, text = await command(store, billing, args)
            finally:
                await store.close()
            code = 1 if isinstance(data, dict) and data.get("ok") is False else 0
            return data, text, code

        try:
            data, text, code = asyncio.run(go())
        except (GatewayError, Conflict) as exc:
            sys.stderr.write(f"tollway: {getattr(exc, 'message', exc)}\n")
            return 1
        if args.json:
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(text + ("\n" if text else ""))
        return code

    return run


async def _accounts_create(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    account = await create_account(s, a.name, credit_usd=a.credit,
                                   platform_fee_fraction=a.fee_fraction,
                                   fixed_fee_usd=a.fixed_fee)  # fmt: skip
    return account_json(
        account
    ), f"{account.id}  {account.name}  balance ${usd_str(account.balance_micros)}"


async def _accounts_list(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    accounts = await s.list_accounts()
    lines = [f"{x.id}  {x.name:<24} balance ${usd_str(x.balance_micros)}  reserved "
             f"${usd_str(x.reserved_micros)}" for x in accounts]  # fmt: skip
    return {"object": "list", "data": [account_json(x) for x in accounts]}, "\n".join(lines)


async def _keys_create(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    account = await require_account(s, a.account)
    expires = parse_expiry(a.expires) if a.expires else None
    for check in getattr(a, "key_checks", ()):  # extensions' flags, checked before the key exists
        check(a)
    new = await KeyAuthenticator(s, b).create_key(account.id, name=a.name, expires_at=expires)
    text = f"{new.secret}\n(key {new.key.id} for {account.name}; shown once, store it now)"
    out = key_json(new.key, new.secret)
    for created in getattr(a, "key_created", ()):  # e.g. tollway.limits stores --rpm …
        out |= await created(s, new.key, a)
    return out, text


async def _keys_list(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    account = await require_account(s, a.account)
    keys = await s.list_keys(account.id)
    data, lines = [], []
    for k in keys:
        shown: dict[str, Any] = {}
        line = ""
        for listed in getattr(a, "key_listed", ()):  # e.g. tollway.limits: limits and spend
            fields, text = await listed(s, k)
            shown |= fields
            line = " ".join(x for x in (line, text) if x)
        data.append(key_json(k) | shown)
        lines.append(
            f"{k.id}  {k.prefix}…  {'revoked' if k.revoked_at else 'active'}"
            + (f"  expires {epoch_seconds(k.expires_at)}" if k.expires_at else "")
            + (f"  {line}" if line else "")
        )
    return {"object": "list", "data": data}, "\n".join(lines)


async def _keys_revoke(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    key = await KeyAuthenticator(s, b).revoke(a.key_id)
    if key is None:
        from tollway.errors import NotFound

        raise NotFound(f"no key {a.key_id!r}")
    return key_json(key), f"revoked {key.id} ({key.prefix}…)"


async def _credit(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    account = await require_account(s, a.account)
    kind: Literal["credit", "adjustment"] = "adjustment" if a.amount < 0 else "credit"
    entry = await credit(s, account.id, a.amount, note=a.note, kind=kind)
    after = await require_account(s, account.id)
    text = (
        f"{kind} ${usd_str(entry.entry.amount_micros)} → balance ${usd_str(after.balance_micros)}"
    )
    return {"entry": entry_json(entry), "account": account_json(after)}, text


async def _ledger(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    account = await require_account(s, a.account)
    entries = await s.entries(account.id, before=a.before, limit=a.limit)
    lines = []
    for item in entries:
        e = item.entry
        extra = (
            f"  {e.request_id} {e.model or ''}{' partial' if e.partial else ''}"
            if e.request_id
            else ""
        )
        lines.append(f"{item.id:>8}  {e.kind:<10} {usd_str(e.amount_micros):>14}{extra}"
                     f"{'  ' + e.note if e.note else ''}")  # fmt: skip
    return {"object": "list", "data": [entry_json(x) for x in entries]}, "\n".join(lines)


async def _audit(s: SqlStorage, b: BillingConfig, a: argparse.Namespace) -> Any:
    violations = await audit(s, b)
    text = "\n".join(f"VIOLATION {v.code} {v.subject}: {v.message}" for v in violations)
    return {"ok": not violations, "violations": [v.as_dict() for v in violations]}, text or "ok"


def _db_upgrade(args: argparse.Namespace) -> int:
    dsn, _ = resolve_database(args)
    applied = asyncio.run(upgrade(dsn))
    if args.json:
        sys.stdout.write(orjson.dumps({"applied": applied}).decode() + "\n")
    else:
        sys.stdout.write(("applied: " + ", ".join(applied) if applied else "up to date") + "\n")
    return 0


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--config", help="YAML config file (its 'database'; or TOLLWAY_CONFIG)")
    p.add_argument("--database", help="sqlite:///PATH or postgresql://… (overrides the config)")
    return p


def register(subparsers: Any) -> None:
    """Add ``accounts``, ``keys``, ``credit``, ``ledger``, ``audit`` and ``db`` to the CLI.

    Other features may extend ``keys create`` and ``keys list`` (``tollway.limits`` does):
    parser defaults ``key_checks`` (``check(args)``, before the key is made),
    ``key_created`` (``await hook(store, key, args)`` → fields added to the output) and
    ``key_listed`` (``await hook(store, key)`` → (fields, text)).
    """
    accounts = subparsers.add_parser("accounts", help="create and list accounts")
    acc = accounts.add_subparsers(dest="accounts_command", required=True)
    p = _common(acc.add_parser("create", help="create an account"))
    p.add_argument("name")
    p.add_argument("--credit", type=_checked(usd_fee), help="opening credit in USD")
    p.add_argument("--fee-fraction", type=_checked(fraction),
                   help="platform fee override, 0 to 10, e.g. 0.05")
    p.add_argument("--fixed-fee", type=_checked(usd_fee),
                   help="fixed fee per request override, USD")
    p.set_defaults(func=_run(_accounts_create))
    _common(acc.add_parser("list", help="list accounts with balances")).set_defaults(
        func=_run(_accounts_list)
    )

    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    p = _common(ks.add_parser("create", help="create a key (shown once)"))
    p.add_argument("account", help="account id or name")
    p.add_argument("--expires", help="ISO date/time, or a duration like 30d, 12h, 90m")
    p.add_argument("--name", help="a label for the key")
    p.set_defaults(func=_run(_keys_create))
    p = _common(ks.add_parser("list", help="list an account's keys (prefixes only)"))
    p.add_argument("account")
    p.set_defaults(func=_run(_keys_list))
    p = _common(ks.add_parser("revoke", help="revoke a key (every instance within seconds)"))
    p.add_argument("key_id")
    p.set_defaults(func=_run(_keys_revoke))

    p = _common(subparsers.add_parser("credit", help="add (or, if negative, adjust) credit"))
    p.add_argument("account")
    p.add_argument("amount", type=_checked(usd), metavar="USD", help="|USD| ≤ 1e9")
    p.add_argument("--note")
    p.set_defaults(func=_run(_credit))

    p = _common(subparsers.add_parser("ledger", help="an account's ledger, newest first"))
    p.add_argument("account")
    p.add_argument("--limit", type=_checked(page_size), default=50)
    p.add_argument("--before", type=_checked(entry_id), help="entries older than this entry id")
    p.set_defaults(func=_run(_ledger))

    p = _common(subparsers.add_parser("audit", help="check the ledger invariants; 1 on violation"))
    p.set_defaults(func=_run(_audit))

    db = subparsers.add_parser("db", help="database maintenance")
    dbs = db.add_subparsers(dest="db_command", required=True)
    _common(dbs.add_parser("upgrade", help="apply pending schema migrations")).set_defaults(
        func=_db_upgrade
    )
