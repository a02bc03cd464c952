"""The ledger: credits and adjustments in, JSON views out, the demo account.

Entries are append-only (the database refuses UPDATE and DELETE on them); an
account's balance is the sum of its entries. Debits are written by
``tollway.admission.Billing.settle``; ``unsettled`` entries by crash recovery.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal, Protocol

from tollway.auth import KeyAuthenticator, NewKey
from tollway.billing.config import BillingConfig
from tollway.billing.pricing import to_micros, usd_str
from tollway.errors import InvalidRequest, NotFound
from tollway.storage.base import Account, AccountStore, LedgerEntry, LedgerStore, NewEntry

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


def _positive_or_signed_usd(usd: Decimal | str | int, *, allow_negative: bool) -> int:
    try:
        amount = Decimal(str(usd))
    except ArithmeticError:
        raise InvalidRequest(f"not an amount of USD: {usd!r}", param="amount_usd") from None
    if not amount.is_finite() or (amount <= 0 and not allow_negative) or amount == 0:
        raise InvalidRequest(
            "amount_usd must be a non-zero number"
            + ("" if allow_negative else " above zero (use an adjustment to remove credit)"),
            param="amount_usd",
        )
    return to_micros(amount)


async def require_account(store: AccountStore, id_or_name: str) -> Account:
    """The account with this id or name, or NotFound."""
    account = await store.get_account(id_or_name)
    if account is None:
        raise NotFound(f"no account {id_or_name!r}")
    return account


async def credit(
    store: _Store,
    account_id: str,
    amount_usd: Decimal | str | int,
    *,
    note: str | None = None,
    kind: Literal["credit", "adjustment"] = "credit",
) -> LedgerEntry:
    """Append a top-up (positive) or an adjustment (either sign) to an account."""
    micros = _positive_or_signed_usd(amount_usd, allow_negative=kind == "adjustment")
    return await store.append(NewEntry(account_id, kind, micros, note=note))


async def create_account(
    store: _Store,
    name: str,
    *,
    credit_usd: Decimal | str | None = None,
    platform_fee_fraction: Decimal | None = None,
    fixed_fee_usd: Decimal | None = None,
) -> Account:
    """Create an account, optionally with an opening credit."""
    if not name or len(name) > 200:
        raise InvalidRequest("account name must be 1–200 characters", param="name")
    account = await store.create_account(
        name,
        platform_fee_fraction=str(platform_fee_fraction)
        if platform_fee_fraction is not None
        else None,
        fixed_fee_micros=to_micros(fixed_fee_usd) if fixed_fee_usd is not None else None,
    )
    if credit_usd is not None and Decimal(str(credit_usd)) != 0:
        await credit(store, account.id, credit_usd, note="opening credit")
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
