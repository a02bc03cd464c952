"""Cost arithmetic against a hand-computed table (cached, reasoning, fee, rounding)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.billing.config import BillingConfig
from tollway.billing.pricing import (
    Cost,
    FeePolicy,
    capped,
    compute_cost,
    fee_micros,
    fee_policy,
    largest_within,
    micros_to_usd,
    to_micros,
    usd_str,
)
from tollway.chunks import Usage
from tollway.config import Prices
from tollway.storage.base import Account

GPT = Prices(
    input_per_mtok=Decimal("2.50"),
    cached_input_per_mtok=Decimal("1.25"),
    output_per_mtok=Decimal("10"),
)
CHEAP = Prices(input_per_mtok=Decimal("0.15"), output_per_mtok=Decimal("0.60"))
NO_FEE = FeePolicy()

# prompt, cached, completion, reasoning, prices, fee fraction, fixed USD, base µ$, fee µ$
TABLE = [
    # 1000 × 2.50 + 500 × 10 = 2500 + 5000 µ$
    (1000, 0, 500, 0, GPT, "0", "0", 7500, 0),
    # 600 × 2.50 + 400 × 1.25 + 100 × 10 = 1500 + 500 + 1000
    (1000, 400, 100, 0, GPT, "0", "0", 3000, 0),
    # reasoning is inside completion: 300 × 10, not (300 + 200) × 10
    (0, 0, 300, 200, GPT, "0", "0", 3000, 0),
    # 5% of 7500 = 375
    (1000, 0, 500, 0, GPT, "0.05", "0", 7500, 375),
    # 1 × 2.50 = 2.5 µ$ → 3 (half up); 10% of 3 = 0.3 → 0
    (1, 0, 0, 0, GPT, "0.10", "0", 3, 0),
    # 4 × 2.50 = 10 µ$; 5% = 0.5 → 1 (half up)
    (4, 0, 0, 0, GPT, "0.05", "0", 10, 1),
    # 7 × 0.15 = 1.05 → 1; 25% of 1 = 0.25 → 0; fixed 0.0000005 $ = 0.5 µ$ → 1
    (7, 0, 0, 0, CHEAP, "0.25", "0.0000005", 1, 1),
    # no cached price → input price: 1000 × 0.15 + 3 × 0.60 = 150 + 1.8 = 151.8 → 152
    (1000, 1000, 3, 0, CHEAP, "0", "0", 152, 0),
    # fixed fee only: 0.01 $ = 10000 µ$
    (0, 0, 0, 0, GPT, "0.5", "0.01", 0, 10000),
    # 400k × 2.50 + 600k × 1.25 + 1M × 10 = 1.00 + 0.75 + 10.00 = 11.75 $; 3% = 0.3525 $
    (1_000_000, 600_000, 1_000_000, 0, GPT, "0.03", "0", 11_750_000, 352_500),
]


@pytest.mark.parametrize(
    ("prompt", "cached", "completion", "reasoning", "prices", "fraction", "fixed", "base", "fee"),
    TABLE,
)
def test_cost_table(
    prompt: int, cached: int, completion: int, reasoning: int, prices: Prices,
    fraction: str, fixed: str, base: int, fee: int,
) -> None:  # fmt: skip
    usage = Usage(prompt, completion, cached, reasoning)
    cost = compute_cost(usage, prices, FeePolicy(Decimal(fraction), Decimal(fixed)))
    assert (cost.base_micros, cost.fee_micros, cost.total_micros) == (base, fee, base + fee)


def test_extra_cost_is_part_of_the_base() -> None:
    cost = compute_cost(Usage(), GPT, FeePolicy(Decimal("0.1")), Decimal("0.002"))
    assert cost == Cost(2000, 200)


def test_usage_cost_figures_are_decimal_with_six_places() -> None:
    figures = Cost(7500, 375).usage_cost()
    assert figures == {
        "base_cost_usd": Decimal("0.007500"),
        "platform_fee_usd": Decimal("0.000375"),
        "total_cost_usd": Decimal("0.007875"),
    }
    assert str(figures["total_cost_usd"]) == "0.007875"


def test_conversions() -> None:
    assert to_micros(Decimal("0.0000025")) == 3
    assert to_micros(Decimal("0.0000024999")) == 2
    assert micros_to_usd(1_234_567) == Decimal("1.234567")
    assert usd_str(-5) == "-0.000005"


@settings(max_examples=500, deadline=None)
@given(micros=st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-10**7, 10**7)))
def test_micros_to_usd_is_the_quantized_division_digit_for_digit(micros: int) -> None:
    """``scaleb`` instead of a division and ``quantize``: the same value, the same six
    places, the same text (what the ledger, the API and the dashboard show)."""
    reference = (Decimal(micros) / 1_000_000).quantize(Decimal("0.000001"))
    got = micros_to_usd(micros)
    assert got == reference
    assert got.as_tuple() == reference.as_tuple()
    assert str(got) == str(reference) == usd_str(micros)


def test_account_overrides_the_configured_fee() -> None:
    config = BillingConfig(platform_fee_fraction=Decimal("0.05"), fixed_fee_usd=Decimal("0.001"))
    assert fee_policy(config) == FeePolicy(Decimal("0.05"), Decimal("0.001"))
    account = Account("a", "a", 0, 0, 0, 0, platform_fee_fraction="0.2", fixed_fee_micros=0)
    assert fee_policy(config, account) == FeePolicy(Decimal("0.2"), Decimal(0))


# -- prompt caching and reasoning conventions (hand-computed) --------------------------

SONNET = Prices(
    input_per_mtok=Decimal("3"), cached_input_per_mtok=Decimal("0.30"),
    cache_write_per_mtok=Decimal("3.75"), cache_write_1h_per_mtok=Decimal("6"),
    output_per_mtok=Decimal("15"),
)  # fmt: skip
HALF_SET = Prices(input_per_mtok=Decimal("0.15"), cache_write_per_mtok=Decimal("0.1875"),
                  output_per_mtok=Decimal("0.60"))  # fmt: skip

# prompt (all input), reads, writes (both tiers), 1-hour writes, completion, reasoning,
# convention, prices, base µ$
CACHE_TABLE = [
    # 31 × 3 + 12000 × 0.30 + 2000 × 3.75 + 1000 × 6 + 547 × 15
    # = 93 + 3600 + 7500 + 6000 + 8205 (the Anthropic replay in test_usage_billing)
    (15_031, 12_000, 3_000, 1_000, 547, 0, "included", SONNET, 25_398),
    # 5-minute writes only: 10000 × 3.75
    (10_000, 0, 10_000, 0, 0, 0, "included", SONNET, 37_500),
    # 1-hour writes only: 10000 × 6
    (10_000, 0, 10_000, 10_000, 0, 0, "included", SONNET, 60_000),
    # reads and writes cannot exceed the prompt: 100 reads, the writes clamp to 0 → 100 × 0.30
    (100, 100, 50, 50, 0, 0, "included", SONNET, 30),
    # no cache prices: writes at the input price → 1000 × 0.15
    (1_000, 0, 400, 100, 0, 0, "included", CHEAP, 150),
    # a 5-minute price and no 1-hour one: the 1-hour tier costs the 5-minute price
    # 1000 × 0.1875 = 187.5 → 188
    (1_000, 0, 1_000, 1_000, 0, 0, "included", HALF_SET, 188),
    # xAI: 9 completion + 94 reasoning reported outside it: 32 × 2.50 + 103 × 10 = 80 + 1030
    (32, 0, 0, 0, 9, 94, "separate", GPT, 1_110),
    # OpenAI: the same 103 output tokens with reasoning inside completion → the same cost
    (32, 0, 0, 0, 103, 94, "included", GPT, 1_110),
]


@pytest.mark.parametrize(
    ("prompt", "reads", "writes", "writes_1h", "completion", "reasoning", "convention",
     "prices", "base"),
    CACHE_TABLE,
)  # fmt: skip
def test_cache_and_reasoning_table(
    prompt: int, reads: int, writes: int, writes_1h: int, completion: int, reasoning: int,
    convention: str, prices: Prices, base: int,
) -> None:  # fmt: skip
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=reads,
                  reasoning_tokens=reasoning, cache_write_tokens=writes,
                  cache_write_1h_tokens=writes_1h, reasoning=convention)  # type: ignore[arg-type]
    cost = compute_cost(usage, prices, FeePolicy(Decimal("0.05")))
    assert cost.base_micros == base
    assert cost.fee_micros == to_micros(Decimal(base) * Decimal("0.05") / 1_000_000)


def test_highest_input_price_is_what_a_prompt_token_may_cost() -> None:
    assert SONNET.highest_input == Decimal("6")
    assert CHEAP.highest_input == Decimal("0.15") and HALF_SET.highest_input == Decimal("0.1875")


@settings(max_examples=400, deadline=None)
@given(
    room=st.integers(0, 10**12),
    fraction=st.decimals(0, 10, places=4),
    fixed=st.integers(0, 10**6),
    excess=st.integers(1, 10**9),
)
def test_capped_is_the_dearest_cost_within_the_reservation(
    room: int, fraction: Decimal, fixed: int, excess: int
) -> None:
    policy = FeePolicy(fraction, Decimal(fixed) / 1_000_000)
    limit = fee_micros(0, policy) + room  # a reservation always covers the fixed fee
    within = largest_within(limit, policy)
    assert largest_within(limit, policy) == within  # a kept answer is the same answer
    assert largest_within(limit, FeePolicy(fraction, Decimal(fixed) / 1_000_000)) == within
    assert within.total_micros <= limit
    assert within.fee_micros == fee_micros(within.base_micros, policy)  # the rule holds
    bigger = within.base_micros + 1
    assert bigger + fee_micros(bigger, policy) > limit  # and nothing dearer fits
    assert capped(within, limit, policy) == (within, None)
    dear = Cost(within.base_micros + excess, fee_micros(within.base_micros + excess, policy))
    billed, overage = capped(dear, limit, policy)
    assert billed == within and overage is not None
    assert billed.total_micros + overage.total_micros == dear.total_micros
