"""The ledger: credits and adjustments in, JSON views out, the demo account.

Entries are append-only (the database refuses UPDATE and DELETE on them); an
account's balance is the sum of its entries. Debits are written by
``tollway.billing.admission.Billing.settle``; ``unsettled`` entries by crash recovery.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal, Protocol

from tollway.auth import KeyAuthenticator, NewKey
from tollway.billing.config import BillingConfig
from tollway.billing.inputs import parse_fee_fraction, parse_text, parse_usd
from tollway.billing.pricing import to_micros, usd_str
from tollway.bounds import MAX_MONEY_USD
from tollway.errors import InvalidRequest, NotFound
from tollway.storage.base import (
    Account,
    AccountStore,
    BalanceOutOfRange,
    LedgerEntry,
    LedgerStore,
    NewEntry,
)

__all__ = [
    "DEMO_ACCOUNT",
    "account_json",
    "create_account",
    "credit",
    "ensure_demo_account",
    "entry_json",
    "require_account",
]

DEMO_ACCOUNT = "demo"


class _Store(AccountStore, LedgerStore, Protocol):
    """Accounts plus ledger."""


def _credit_micros(usd: Any, param: str, *, allow_negative: bool) -> int:
    """A credit (above zero) or an adjustment (either sign) as micro-USD; never zero."""
    amount = parse_usd(usd, param, low=-MAX_MONEY_USD if allow_negative else Decimal(0))
    micros = to_micros(amount)
    if micros == 0:
        raise InvalidRequest(
            f"'{param}' must be a non-zero amount of at least 0.000001 USD"
            + ("" if allow_negative else " (use an adjustment to remove credit)"),
            param=param,
            code="invalid_value",
        )
    return micros


async def require_account(store: AccountStore, id_or_name: str) -> Account:
    """The account with this id or name, or NotFound."""
    account = await store.get_account(id_or_name)
    if account is None:
        raise NotFound(f"no account {id_or_name!r}")
    return account


async def credit(
    store: _Store,
    account_id: str,
    amount_usd: Any,
    *,
    note: Any = None,
    kind: Literal["credit", "adjustment"] = "credit",
) -> LedgerEntry:
    """Append a top-up (positive) or an adjustment (either sign) to an account.

    Refused (400, nothing written) when the balance would pass ``MAX_MONEY_MICROS``
    or an adjustment would take the available balance (balance − reserved) below zero.
    """
    micros = _credit_micros(amount_usd, "amount_usd", allow_negative=kind == "adjustment")
    note = parse_text(note, "note")
    try:
        return await store.append(NewEntry(account_id, kind, micros, note=note))
    except BalanceOutOfRange as exc:
        raise InvalidRequest(str(exc), param="amount_usd", code="balance_out_of_range") from None


async def create_account(
    store: _Store,
    name: str,
    *,
    credit_usd: Any = None,
    platform_fee_fraction: Any = None,
    fixed_fee_usd: Any = None,
) -> Account:
    """Create an account, optionally with an opening credit and fee overrides.

    Every value is checked before anything is written (a bad one is a 400 naming it).
    """
    checked = parse_text(name, "name", max_chars=200, required=True)
    assert checked is not None
    fraction = (
        parse_fee_fraction(platform_fee_fraction, "platform_fee_fraction")
        if platform_fee_fraction is not None
        else None
    )
    fixed = (
        to_micros(parse_usd(fixed_fee_usd, "fixed_fee_usd", low=Decimal(0)))
        if fixed_fee_usd is not None
        else None
    )
    opening = (
        parse_usd(credit_usd, "credit_usd", low=Decimal(0)) if credit_usd is not None else None
    )
    if opening is not None and opening != 0:
        _credit_micros(opening, "credit_usd", allow_negative=False)
    account = await store.create_account(
        checked,
        platform_fee_fraction=str(fraction) if fraction is not None else None,
        fixed_fee_micros=fixed,
    )
    if opening is not None and opening != 0:
        await credit(store, account.id, opening, note="opening credit")
        account = await require_account(store, account.id)
    return account


async def ensure_demo_account(
    store: _Store, keys: KeyAuthenticator, config: BillingConfig
) -> tuple[Account, NewKey]:
    """The demo account (created with ``demo_credit_usd`` if missing) and a fresh key for it."""
    account = await store.get_account(DEMO_ACCOUNT)
    if account is None:
        account = await create_account(store, DEMO_ACCOUNT, credit_usd=config.demo_credit_usd)
    return account, await keys.create_key(account.id, name="demo")


def account_json(account: Account) -> dict[str, Any]:
    """An account as the APIs and ``--json`` show it (money as USD strings)."""
    return {
        "id": account.id,
        "object": "account",
        "name": account.name,
        "created_at": int(account.created_at),
        "balance_usd": usd_str(account.balance_micros),
        "reserved_usd": usd_str(account.reserved_micros),
        "available_usd": usd_str(account.available_micros),
        "platform_fee_fraction": account.platform_fee_fraction,
        "fixed_fee_usd": usd_str(account.fixed_fee_micros)
        if account.fixed_fee_micros is not None
        else None,
        "disabled": account.disabled,
    }


def entry_json(item: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as the APIs and ``--json`` show it."""
    e = item.entry
    out: dict[str, Any] = {
        "id": item.id,
        "object": "ledger.entry",
        "created_at": item.created_at,
        "account_id": e.account_id,
        "kind": e.kind,
        "amount_usd": usd_str(e.amount_micros),
        "note": e.note,
    }
    if e.request_id is not None:
        out["request_id"] = e.request_id
    if e.kind in ("debit", "provider_overage"):
        out.update(
            model=e.model,
            deployment=e.deployment,
            partial=e.partial,
            usage={
                "prompt_tokens": e.prompt_tokens,
                "cached_tokens": e.cached_tokens,
                "cache_write_tokens": e.cache_write_tokens or 0,
                "cache_write_1h_tokens": e.cache_write_1h_tokens or 0,
                "completion_tokens": e.completion_tokens,
                "reasoning_tokens": e.reasoning_tokens,
                "output_tokens": e.output_tokens
                if e.output_tokens is not None
                else e.completion_tokens,
            },
            prices=json.loads(e.prices) if e.prices else None,
            base_cost_usd=usd_str(e.base_cost_micros or 0),
            platform_fee_usd=usd_str(e.platform_fee_micros or 0),
            total_cost_usd=usd_str(e.total_cost_micros or 0),
        )
    return out
