"""The ledger invariants, checked against the database; each breach is one Violation.

Checked:

- ``bad_value``: every stored money value is an integer within ±``MAX_MONEY_MICROS``
  (a REAL, TEXT, NULL or huge value left by another writer is reported, never a crash);
- ``balance``: every account's balance equals the sum of its ledger entries;
- ``reserved``: every account's reserved amount equals its open reservations;
- ``negative_balance``: no balance below zero;
- ``stale_reservation``: no open reservation older than the longest allowed request (a
  balance lease: its age limit plus that);
- ``duplicate_debit``: no request debited twice;
- ``missing_debit``: every settled request has its debit;
- ``missing_unsettled``: every released (orphaned) request has its ``unsettled`` record;
- ``debit_arithmetic``: each debit's amount is −total and total = base + fee;
- ``debit_over_reservation``: no debit above its request's reservation (with extensions);
- ``bad_overage``: each ``provider_overage`` line moves no money, its total = base + fee
  and is positive, and its request has exactly one debit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tollway.billing.config import BillingConfig
from tollway.billing.pricing import usd_str
from tollway.bounds import MAX_MONEY_MICROS
from tollway.storage.base import LEASE_PREFIX, AuditStore
from tollway.storage.sql_audit import stored_int

__all__ = ["Violation", "audit"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: a code, what it concerns, and a sentence."""

    code: str
    subject: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Store(AuditStore, Protocol):
    """The audit queries."""


def _usd(value: Any) -> str:
    """A stored amount for a message: ``$1.500000`` for an integer, else the raw value."""
    number = stored_int(value)
    if number is None and isinstance(value, str) and value.lstrip("-").isdigit():
        number = int(value)
    return f"${usd_str(number)}" if number is not None else repr(value)


async def audit(
    store: _Store, config: BillingConfig, *, now: float | None = None
) -> list[Violation]:
    """Check every invariant; an empty list means the books balance."""
    now = time.time() if now is None else now
    out: list[Violation] = []
    for r in await store.bad_values():
        out.append(Violation(
            "bad_value", f"{r['tbl']}:{r['row_id']}",
            f"{r['tbl']}.{r['col']} of row {r['row_id']} is {r['value']!r} ({r['kind']}); "
            f"money must be an integer number of micro-USD within ±{MAX_MONEY_MICROS}",
        ))  # fmt: skip
    for r in await store.balance_mismatches():
        out.append(Violation(
            "balance", r["account_id"],
            f"balance {_usd(r['balance_micros'])} differs from the sum of its "
            f"entries {_usd(r['ledger_sum'])}",
        ))  # fmt: skip
    for r in await store.reserved_mismatches():
        out.append(Violation(
            "reserved", r["account_id"],
            f"reserved {_usd(r['reserved_micros'])} differs from its open "
            f"reservations {_usd(r['open_sum'])}",
        ))  # fmt: skip
    for r in await store.negative_balances():
        out.append(Violation(
            "negative_balance", r["account_id"],
            f"balance is {_usd(r['balance_micros'])} (below zero)",
        ))  # fmt: skip
    for r in await store.stale_reservations(now - config.reservation_max_age_seconds):
        if isinstance(r["created_at"], int | float) and str(r["request_id"]).startswith(
            LEASE_PREFIX
        ) and now - r["created_at"] <= config.longest_open_seconds(r["request_id"]):
            continue  # a balance lease: its own age limit, then its last request's
        created = r["created_at"]
        age = f"{now - created:.0f}s" if isinstance(created, int | float) else "an unknown time"
        out.append(Violation(
            "stale_reservation", r["request_id"],
            f"reservation {r['id']} has been open {age}, longer than the longest "
            f"allowed request ({config.reservation_max_age_seconds:.0f}s)",
        ))  # fmt: skip
    for r in await store.duplicate_debits():
        out.append(Violation(
            "duplicate_debit", r["request_id"], f"request debited {r['debits']} times"
        ))  # fmt: skip
    for r in await store.settled_without_debit():
        out.append(Violation(
            "missing_debit", r["request_id"],
            f"reservation {r['reservation_id']} was settled but the request has no debit",
        ))  # fmt: skip
    for r in await store.released_without_record():
        out.append(Violation(
            "missing_unsettled", r["request_id"],
            f"reservation {r['reservation_id']} was released without an unsettled record",
        ))  # fmt: skip
    for r in await store.bad_debit_arithmetic():
        out.append(Violation(
            "debit_arithmetic", str(r["request_id"]),
            f"entry {r['id']}: amount {r['amount_micros']}, base {r['base_cost_micros']}, "
            f"fee {r['platform_fee_micros']}, total {r['total_cost_micros']} (micro-USD) "
            "do not add up",
        ))  # fmt: skip
    for r in await store.debits_over_reservation():
        out.append(Violation(
            "debit_over_reservation", str(r["request_id"]),
            f"entry {r['id']}: debit {_usd(r['debit_micros'])} is more than the "
            f"{_usd(r['reserved_micros'])} reserved for the request",
        ))  # fmt: skip
    for r in await store.bad_overage_entries():
        out.append(Violation(
            "bad_overage", str(r["request_id"]),
            f"provider_overage entry {r['id']}: amount {r['amount_micros']}, base "
            f"{r['base_cost_micros']}, fee {r['platform_fee_micros']}, total "
            f"{r['total_cost_micros']} (micro-USD), {r['debits']} debit(s) for the request",
        ))  # fmt: skip
    for subject, message in await store.spend_cap_mismatches():  # held with reservations
        out.append(Violation("spend_cap", subject, message))
    return out
