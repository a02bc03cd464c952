"""Cost arithmetic against a hand-computed table (cached, reasoning, fee, rounding)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollway.billing.config import BillingConfig
from tollway.billing.pricing import (
    Cost,
    FeePolicy,
    compute_cost,
    fee_policy,
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


def test_account_overrides_the_configured_fee() -> None:
    config = BillingConfig(platform_fee_fraction=Decimal("0.05"), fixed_fee_usd=Decimal("0.001"))
    assert fee_policy(config) == FeePolicy(Decimal("0.05"), Decimal("0.001"))
    account = Account("a", "a", 0, 0, 0, 0, platform_fee_fraction="0.2", fixed_fee_micros=0)
    assert fee_policy(config, account) == FeePolicy(Decimal("0.2"), Decimal(0))
