"""Storage records and narrow per-concern protocols (accounts, keys, ledger, reservations).

Every backend implements all of them on one object (``Storage``); callers type
against the narrowest protocol they need. Money is integer micro-USD, times are
Unix epoch seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "LEASE_PREFIX",
    "LeaseStore",
    "Account",
    "AccountStore",
    "ApiKey",
    "AuditStore",
    "BalanceOutOfRange",
    "Conflict",
    "EntryKind",
    "InstanceRecord",
    "InstanceStore",
    "KeyStore",
    "LedgerEntry",
    "LedgerStore",
    "NewEntry",
    "Reservation",
    "ReservationStore",
    "ReserveOutcome",
    "Storage",
]

EntryKind = Literal["credit", "adjustment", "debit", "unsettled", "provider_overage"]


# The request_id of a balance lease's reservation (``tollway.billing.balance_lease``):
# never a request's ("req_…"), so the audit tells leases from requests.
LEASE_PREFIX = "lease_"

class Conflict(Exception):
    """A uniqueness rule was broken (e.g. an account name already taken)."""


class BalanceOutOfRange(Exception):
    """A credit or adjustment would move a balance out of its allowed range (nothing written)."""


@dataclass(frozen=True, slots=True)
class Account:
    """An account: balance is the sum of its ledger entries; reserved is open reservations."""

    id: str
    name: str
    created_at: float
    updated_at: float
    balance_micros: int
    reserved_micros: int
    platform_fee_fraction: str | None = None
    fixed_fee_micros: int | None = None
    disabled: bool = False

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.reserved_micros


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: only its SHA-256 hash and a display prefix are kept."""

    id: str
    account_id: str
    key_hash: str
    prefix: str
    name: str | None
    created_at: float
    updated_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A ledger entry to append; ``amount_micros`` is signed (credits > 0, debits < 0)."""

    account_id: str
    kind: EntryKind
    amount_micros: int
    request_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    prices: str | None = None  # JSON text of the prices used
    base_cost_micros: int | None = None
    platform_fee_micros: int | None = None
    total_cost_micros: int | None = None
    partial: bool = False
    note: str | None = None
    cache_write_tokens: int | None = None  # part of prompt_tokens
    cache_write_1h_tokens: int | None = None  # part of cache_write_tokens
    output_tokens: int | None = None  # billed at the output price (completion + separate reasoning)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A stored ledger entry (``id`` grows monotonically; it is the pagination cursor)."""

    id: int
    created_at: float
    entry: NewEntry


@dataclass(frozen=True, slots=True)
class Reservation:
    """Worst-case cost held against an account while a request runs."""

    id: str
    request_id: str
    account_id: str
    instance_id: str
    amount_micros: int
    state: Literal["open", "settled", "released"]
    created_at: float
    closed_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """The result of a reservation attempt; on refusal ``reservation`` is None.

    ``balance_micros`` and ``reserved_micros``: the account's figures after the attempt;
    0 after a success when the caller said it needs none (``reserve(figures=False)``, on
    SQLite) and after a hold from a balance lease."""

    reservation: Reservation | None
    balance_micros: int
    reserved_micros: int
    refused_cap: Any = None  # the spend cap (storage.sql_caps.Cap) that refused, if one did
    granted_micros: int = 0  # what this call added to the reservation
    not_open: bool = False  # an extension refused because the reservation is closed
    # a reservation decided ahead of its commit (``reserve(early=True)``): futures that end
    # once it is durable (raise if its commit failed): ``committed`` to await directly (an
    # awaiter's cancellation cancels it), ``recorded`` ended only by the commit; None:
    # durable already
    committed: Any = None
    recorded: Any = None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A running gateway process, kept alive by its heartbeat."""

    id: str
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float


class AccountStore(Protocol):
    async def create_account(
        self,
        name: str,
        *,
        platform_fee_fraction: str | None = None,
        fixed_fee_micros: int | None = None,
    ) -> Account: ...

    async def get_account(self, id_or_name: str) -> Account | None: ...

    async def list_accounts(self) -> list[Account]: ...


class KeyStore(Protocol):
    async def create_key(
        self,
        account_id: str,
        key_hash: str,
        prefix: str,
        *,
        name: str | None,
        expires_at: float | None,
    ) -> ApiKey: ...

    async def key_by_hash(self, key_hash: str) -> tuple[ApiKey, Account] | None: ...

    async def keys_changed_since(self, since: float) -> list[tuple[ApiKey, Account]]: ...

    async def list_keys(self, account_id: str) -> list[ApiKey]: ...

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def revoke_key(self, key_id: str) -> ApiKey | None: ...


class LedgerStore(Protocol):
    async def append(self, entry: NewEntry) -> LedgerEntry: ...

    async def entries(
        self, account_id: str, *, before: int | None = None, limit: int = 100
    ) -> list[LedgerEntry]: ...


class ReservationStore(Protocol):
    async def reserve(
        self, account_id: str, request_id: str, instance_id: str, amount_micros: int,
        *, caps: Sequence[Any] = (), roomy: tuple[int, int] | None = None,
        early: bool = False, figures: bool = True,
    ) -> ReserveOutcome: ...

    async def extend(
        self, reservation_id: str, amount_micros: int, *, caps: Sequence[Any] = (),
        roomy: tuple[int, int] | None = None,
    ) -> ReserveOutcome: ...

    async def settle(
        self, reservation_id: str | None, debit: NewEntry, extra: Sequence[NewEntry] = (),
        *, capped: bool = False, held_micros: int | None = None,
    ) -> LedgerEntry | None: ...

    async def release_orphan(self, reservation_id: str, note: str) -> LedgerEntry | None: ...

    async def open_reservations(
        self, *, not_of: Collection[str] | None = None, opened_before: float | None = None
    ) -> list[Reservation]:
        """Every open reservation, oldest first; given ``not_of`` (instance ids) and
        ``opened_before`` (Unix seconds), only those that no instance of ``not_of`` holds or
        that were opened before then."""
        ...


class LeaseStore(ReservationStore, Protocol):
    """Reservations plus what balance leases (``tollway.billing.balance_lease``) need."""

    async def settle_leased(
        self, lease_id: str, debit: NewEntry, extra: Sequence[NewEntry] = (),
        give_back: int = 0,
    ) -> tuple[LedgerEntry | None, bool]: ...

    async def shrink_lease(
        self, lease_id: str, amount_micros: int
    ) -> Literal["open", "closed"] | None: ...


class InstanceStore(Protocol):
    async def register_instance(self, record: InstanceRecord) -> None: ...

    async def heartbeat(self, instance_id: str, at: float) -> bool: ...

    async def remove_instance(self, instance_id: str) -> None: ...

    async def list_instances(self) -> list[InstanceRecord]: ...


class AuditStore(Protocol):
    """The audit's queries; each returns the offending rows (robust to any stored value)."""

    async def bad_values(self) -> list[dict[str, Any]]: ...

    async def negative_balances(self) -> list[dict[str, Any]]: ...

    async def stale_reservations(self, before: float) -> list[dict[str, Any]]: ...

    async def balance_mismatches(self) -> list[dict[str, Any]]: ...

    async def reserved_mismatches(self) -> list[dict[str, Any]]: ...

    async def duplicate_debits(self) -> list[dict[str, Any]]: ...

    async def settled_without_debit(self) -> list[dict[str, Any]]: ...

    async def released_without_record(self) -> list[dict[str, Any]]: ...

    async def bad_debit_arithmetic(self) -> list[dict[str, Any]]: ...

    async def debits_over_reservation(self) -> list[dict[str, Any]]: ...

    async def bad_overage_entries(self) -> list[dict[str, Any]]: ...

    async def spend_cap_mismatches(self) -> list[tuple[str, str]]: ...


class Storage(
    AccountStore, KeyStore, LedgerStore, LeaseStore, InstanceStore, AuditStore, Protocol
):
    """Everything billing needs from a backend, plus lifecycle."""

    @property
    def dialect(self) -> Literal["sqlite", "postgres"]: ...

    async def close(self) -> None: ...
