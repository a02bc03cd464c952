"""Prices × usage → cost, in Decimal, rounded once to integer micro-USD.

Rounding rule (also in the README):

1. ``base`` (exact Decimal) = the sum over the request's upstream calls of
   plain input × input + cache reads × cached_input + cache writes (5-minute tier)
   × cache_write + cache writes (1-hour tier) × cache_write_1h + output × output,
   each at the prices of the deployment that served the call (per 1M tokens),
   plus any per-call platform-tool prices. Output is ``completion_tokens`` plus
   reasoning tokens when the provider reports them outside ``completion_tokens``,
   so reasoning is billed once, at the output price, under either convention.
2. ``base_micros`` = base rounded to a whole micro-USD, ROUND_HALF_UP.
3. ``fee_micros`` = (base_micros × fee fraction) rounded ROUND_HALF_UP, plus the
   fixed fee per request (itself rounded ROUND_HALF_UP). The fee is computed from
   the *rounded* base so a client can recompute it from the figures it sees.
4. ``total_micros`` = base_micros + fee_micros (no further rounding).
5. Never more than the reservation: when the total would exceed the request's
   reservation, the billed base is the largest whole micro-USD whose total by
   rules 3–4 fits in the reservation; the rest (base and fee) is the provider
   overage, recorded but not charged.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
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
    "capped",
    "compute_cost",
    "fee_micros",
    "fee_policy",
    "largest_within",
    "micros_to_usd",
    "priced",
    "prices_json",
    "to_micros",
    "usd_str",
]

_MILLION = Decimal(1_000_000)
_MICRO = Decimal("0.000001")
_ONE = Decimal(1)
_ZERO_USD = Decimal("0.000000")


def to_micros(usd: Decimal) -> int:
    """USD → integer micro-USD, ROUND_HALF_UP."""
    return int((usd * _MILLION).quantize(_ONE, rounding=ROUND_HALF_UP))


def micros_to_usd(micros: int) -> Decimal:
    """Integer micro-USD → Decimal USD with exactly six places.

    ``scaleb`` moves the decimal point without dividing or rounding: the same digits and
    exponent as ``(Decimal(micros) / 10**6).quantize(Decimal("0.000001"))`` at a third of
    the cost (a request's cost is shown this way six times); zero alone needs its six
    places written out (``Decimal(0).scaleb(-6)`` prints as ``0E-6``)."""
    return Decimal(micros).scaleb(-6) if micros else _ZERO_USD


def usd_str(micros: int) -> str:
    """Integer micro-USD → ``"1.234567"`` (what JSON APIs return)."""
    return str(micros_to_usd(micros))


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """The platform fee that applies to one account (``fixed_micros``: the fixed fee in
    micro-USD, rounded once here instead of at every use)."""

    fraction: Decimal = Decimal(0)
    fixed_usd: Decimal = Decimal(0)
    fixed_micros: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed_micros", to_micros(self.fixed_usd))


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
    """Exact (unrounded) base cost in USD of one upstream call's usage."""
    prompt = max(usage.prompt_tokens, 0)
    reads = min(max(usage.cached_tokens, 0), prompt)
    writes = min(max(usage.cache_write_tokens, 0), prompt - reads)
    per_mtok = (prompt - reads - writes) * prices.input_per_mtok + max(
        usage.output_tokens, 0
    ) * prices.output_per_mtok
    if reads:
        per_mtok += reads * prices.cached_input
    if writes:
        writes_1h = min(max(usage.cache_write_1h_tokens, 0), writes)
        per_mtok += (writes - writes_1h) * prices.cache_write + writes_1h * prices.cache_write_1h
    return per_mtok / _MILLION + extra_usd


def fee_micros(base_micros: int, policy: FeePolicy) -> int:
    """Rule 3: the fee on a rounded base (base_micros × fraction is base × fraction in µ$)."""
    fraction = policy.fraction
    fee = int((fraction * base_micros).quantize(_ONE, rounding=ROUND_HALF_UP)) if fraction else 0
    return fee + policy.fixed_micros


def priced(base_usd: Decimal, policy: FeePolicy) -> Cost:
    """The three figures of an exact base cost (rules 2–4)."""
    base = to_micros(base_usd)
    return Cost(base, fee_micros(base, policy))


def compute_cost(
    usage: Usage, prices: Prices, policy: FeePolicy, extra_usd: Decimal = Decimal(0)
) -> Cost:
    """Apply the rounding rule in this module's docstring to one call's usage."""
    return priced(base_cost_usd(usage, prices, extra_usd), policy)


def largest_within(limit_micros: int, policy: FeePolicy) -> Cost:
    """Rule 5: the dearest cost (base and fee by rules 3–4) whose total is ≤ ``limit_micros``.

    A request's output limit asks this of its reservation (≈ 2 µs of Decimal work, a few
    fee roundings): the answers are kept, as they depend on these two values alone."""
    return _largest_within(limit_micros, policy)


@functools.lru_cache(maxsize=4096)
def _largest_within(limit_micros: int, policy: FeePolicy) -> Cost:
    fixed = policy.fixed_micros
    if limit_micros <= fixed:
        return Cost(0, min(fee_micros(0, policy), max(limit_micros, 0)))
    base = int((limit_micros - fixed) / (1 + policy.fraction))  # an estimate; fix it up
    while base + 1 + fee_micros(base + 1, policy) <= limit_micros:
        base += 1
    while base > 0 and base + fee_micros(base, policy) > limit_micros:
        base -= 1
    return Cost(base, fee_micros(base, policy))


def capped(cost: Cost, limit_micros: int, policy: FeePolicy) -> tuple[Cost, Cost | None]:
    """(what is billed, the provider overage or None): rule 5."""
    if cost.total_micros <= limit_micros:
        return cost, None
    billed = largest_within(limit_micros, policy)
    return billed, Cost(cost.base_micros - billed.base_micros, cost.fee_micros - billed.fee_micros)


def prices_json(prices: Prices, policy: FeePolicy | None = None) -> str:
    """The prices used, as stored on a debit (Decimal strings, never floats).

    Every settlement asks, almost always for the same few prices and policies: the
    answers are kept (≈ 3.5 µs each to build, ≈ 0.4 µs to look up)."""
    return _prices_json(prices, policy)


@functools.lru_cache(maxsize=1024)
def _prices_json(prices: Prices, policy: FeePolicy | None) -> str:
    data: dict[str, Any] = {
        "input_per_mtok": str(prices.input_per_mtok),
        "cached_input_per_mtok": str(prices.cached_input),
        "cache_write_per_mtok": str(prices.cache_write),
        "cache_write_1h_per_mtok": str(prices.cache_write_1h),
        "output_per_mtok": str(prices.output_per_mtok),
    }
    if policy is not None:
        data["platform_fee_fraction"] = str(policy.fraction)
        data["fixed_fee_usd"] = str(policy.fixed_usd)
    return json.dumps(data, sort_keys=True)
