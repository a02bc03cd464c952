"""Prices × usage → cost, in Decimal, rounded once to integer micro-USD.

Rounding rule (also in the README):

1. ``base`` (exact Decimal) = (prompt − cached) × input + cached × cached_input
   + completion × output, each price per 1M tokens, plus any extra per-request
   cost (platform tools). Reasoning tokens are part of ``completion_tokens``
   (OpenAI's convention) and so billed once, at the output price.
2. ``base_micros`` = base rounded to a whole micro-USD, ROUND_HALF_UP.
3. ``fee_micros`` = (base_micros × fee fraction) rounded ROUND_HALF_UP, plus the
   fixed fee per request (itself rounded ROUND_HALF_UP). The fee is computed from
   the *rounded* base so a client can recompute it from the figures it sees.
4. ``total_micros`` = base_micros + fee_micros (no further rounding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tollway.billing.config import BillingConfig
from tollway.chunks import Usage
from tollway.config import Prices
from tollway.storage.base import Account

__all__ = [
    "Cost",
    "FeePolicy",
    "base_cost_usd",
    "compute_cost",
    "fee_policy",
    "micros_to_usd",
    "prices_json",
    "to_micros",
    "usd_str",
]

_MILLION = Decimal(1_000_000)
_MICRO = Decimal("0.000001")


def to_micros(usd: Decimal) -> int:
    """USD → integer micro-USD, ROUND_HALF_UP."""
    return int((usd * _MILLION).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micros_to_usd(micros: int) -> Decimal:
    """Integer micro-USD → Decimal USD with exactly six places."""
    return (Decimal(micros) / _MILLION).quantize(_MICRO)


def usd_str(micros: int) -> str:
    """Integer micro-USD → ``"1.234567"`` (what JSON APIs return)."""
    return str(micros_to_usd(micros))


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """The platform fee that applies to one account."""

    fraction: Decimal = Decimal(0)
    fixed_usd: Decimal = Decimal(0)


def fee_policy(config: BillingConfig, account: Account | None = None) -> FeePolicy:
    """The configured fee, with the account's overrides (if any) winning."""
    fraction = config.platform_fee_fraction
    fixed = config.fixed_fee_usd
    if account is not None:
        if account.platform_fee_fraction is not None:
            fraction = Decimal(account.platform_fee_fraction)
        if account.fixed_fee_micros is not None:
            fixed = micros_to_usd(account.fixed_fee_micros)
    return FeePolicy(fraction, fixed)


@dataclass(frozen=True, slots=True)
class Cost:
    """The three figures of one request, in micro-USD."""

    base_micros: int
    fee_micros: int

    @property
    def total_micros(self) -> int:
        return self.base_micros + self.fee_micros

    def usage_cost(self) -> dict[str, Decimal]:
        """The ``Usage.cost`` mapping: Decimal USD with six places."""
        return {
            "base_cost_usd": micros_to_usd(self.base_micros),
            "platform_fee_usd": micros_to_usd(self.fee_micros),
            "total_cost_usd": micros_to_usd(self.total_micros),
        }


def base_cost_usd(usage: Usage, prices: Prices, extra_usd: Decimal = Decimal(0)) -> Decimal:
    """Exact (unrounded) base cost in USD."""
    cached = min(max(usage.cached_tokens, 0), max(usage.prompt_tokens, 0))
    uncached = max(usage.prompt_tokens, 0) - cached
    cached_price = (
        prices.cached_input_per_mtok
        if prices.cached_input_per_mtok is not None
        else prices.input_per_mtok
    )
    per_mtok = (
        uncached * prices.input_per_mtok
        + cached * cached_price
        + max(usage.completion_tokens, 0) * prices.output_per_mtok
    )
    return per_mtok / _MILLION + extra_usd


def compute_cost(
    usage: Usage, prices: Prices, policy: FeePolicy, extra_usd: Decimal = Decimal(0)
) -> Cost:
    """Apply the rounding rule in this module's docstring."""
    base = to_micros(base_cost_usd(usage, prices, extra_usd))
    fee = to_micros(micros_to_usd(base) * policy.fraction) + to_micros(policy.fixed_usd)
    return Cost(base, fee)


def prices_json(prices: Prices, policy: FeePolicy | None = None) -> str:
    """The prices used, as stored on a debit (Decimal strings, never floats)."""
    data: dict[str, Any] = {
        "input_per_mtok": str(prices.input_per_mtok),
        "cached_input_per_mtok": str(
            prices.cached_input_per_mtok
            if prices.cached_input_per_mtok is not None
            else prices.input_per_mtok
        ),
        "output_per_mtok": str(prices.output_per_mtok),
    }
    if policy is not None:
        data["platform_fee_fraction"] = str(policy.fraction)
        data["fixed_fee_usd"] = str(policy.fixed_usd)
    return json.dumps(data, sort_keys=True)
