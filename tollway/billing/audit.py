"""The ledger invariants, checked against the database; each breach is one Violation.

Checked:

- ``balance``: every account's balance equals the sum of its ledger entries;
- ``reserved``: every account's reserved amount equals its open reservations;
- ``negative_balance``: no balance below zero;
- ``stale_reservation``: no open reservation older than the longest allowed request;
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
from tollway.storage.base import AccountStore, AuditStore, ReservationStore

__all__ = ["Violation", "audit"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: a code, what it concerns, and a sentence."""

    code: str
    subject: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Store(AccountStore, AuditStore, ReservationStore, Protocol):
    """Accounts, reservations and the audit queries."""


async def audit(
    store: _Store, config: BillingConfig, *, now: float | None = None
) -> list[Violation]:
    """Check every invariant; an empty list means the books balance."""
    now = time.time() if now is None else now
    out: list[Violation] = []
    for r in await store.balance_mismatches():
        out.append(Violation(
            "balance", r["account_id"],
            f"balance ${usd_str(int(r['balance_micros']))} differs from the sum of its "
            f"entries ${usd_str(int(r['ledger_sum']))}",
        ))  # fmt: skip
    for r in await store.reserved_mismatches():
        out.append(Violation(
            "reserved", r["account_id"],
            f"reserved ${usd_str(int(r['reserved_micros']))} differs from its open "
            f"reservations ${usd_str(int(r['open_sum']))}",
        ))  # fmt: skip
    for account in await store.list_accounts():
        if account.balance_micros < 0:
            out.append(Violation(
                "negative_balance", account.id,
                f"balance is ${usd_str(account.balance_micros)} (below zero)",
            ))  # fmt: skip
    for res in await store.open_reservations():
        age = now - res.created_at
        if age > config.reservation_max_age_seconds:
            out.append(Violation(
                "stale_reservation", res.request_id,
                f"reservation {res.id} has been open {age:.0f}s, longer than the longest "
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
            f"entry {r['id']}: debit ${usd_str(int(r['debit_micros']))} is more than the "
            f"${usd_str(int(r['reserved_micros']))} reserved for the request",
        ))  # fmt: skip
    for r in await store.bad_overage_entries():
        out.append(Violation(
            "bad_overage", str(r["request_id"]),
            f"provider_overage entry {r['id']}: amount {r['amount_micros']}, base "
            f"{r['base_cost_micros']}, fee {r['platform_fee_micros']}, total "
            f"{r['total_cost_micros']} (micro-USD), {r['debits']} debit(s) for the request",
        ))  # fmt: skip
    return out
