"""The numeric bounds every entrance enforces (HTTP API, CLI, config), in one place.

They are chosen so that the worst case of any computation over accepted values
stays inside a signed 64-bit integer (what SQLite and PostgreSQL store): one
upstream call's reservation is at most ``MAX_TOKENS`` × 128 choices ×
``MAX_PRICE_PER_MTOK`` × (1 + ``MAX_FEE_FRACTION``) plus the prompt (a body of at
most 1 GiB) and the fixed fee ≈ 3.0·10^18 micro-USD, against 9.2·10^18; and no
balance can cover more than ``MAX_MONEY_MICROS``, so nothing larger is ever reserved. Money is
integer micro-USD; no single amount and no balance may pass ``MAX_MONEY_MICROS``
(10^15 micro-USD = 1,000,000,000 USD) in magnitude.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "INT64_MAX",
    "MAX_EXPIRY_SECONDS",
    "MAX_FEE_FRACTION",
    "MAX_JSON_DEPTH",
    "MAX_MONEY_MICROS",
    "MAX_MONEY_USD",
    "MAX_NOTE_CHARS",
    "MAX_PRICE_PER_MTOK",
    "MAX_TOKENS",
    "MAX_TOOL_PRICE_USD",
]

INT64_MAX = 2**63 - 1

MAX_MONEY_MICROS = 10**15
"""Largest amount, fee or balance, in micro-USD (1e9 USD)."""

MAX_MONEY_USD = Decimal(MAX_MONEY_MICROS) / Decimal(1_000_000)

MAX_TOKENS = 2**31 - 1
"""Largest token count a request may ask for (``max_tokens``, output caps)."""

MAX_PRICE_PER_MTOK = Decimal(1_000_000)
"""Largest price per million tokens a deployment may declare (USD): a dollar a token."""

MAX_TOOL_PRICE_USD = Decimal(1000)
"""Largest price of one platform-tool call (USD)."""

MAX_FEE_FRACTION = Decimal(10)
"""Largest platform fee as a fraction of the base cost."""

MAX_EXPIRY_SECONDS = 100 * 365 * 86400
"""How far ahead an API key's expiry may lie (100 years)."""

MAX_NOTE_CHARS = 1000
"""Longest free-text note or name stored with a ledger entry or key."""

MAX_JSON_DEPTH = 128
"""Deepest nesting of arrays/objects a request body may have (the JSON encoder's limit is 254)."""
