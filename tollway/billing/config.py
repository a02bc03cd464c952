"""Billing settings: fees, admission defaults, key cache and crash-recovery timings.

Meant to hang off the main config as ``Settings.billing: BillingConfig``.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from tollway.bounds import MAX_FEE_FRACTION, MAX_MONEY_USD, MAX_TOKENS
from tollway.storage.base import LEASE_PREFIX

__all__ = ["BillingConfig"]


class BillingConfig(BaseModel):
    """How tollway charges, admits and reconciles. Money in USD as Decimal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="reserve and debit for every /v1 request")
    platform_fee_fraction: Decimal = Field(
        default=Decimal(0),
        ge=0,
        le=MAX_FEE_FRACTION,
        allow_inf_nan=False,
        description="fee as a fraction of the base cost (0.05 = 5%)",
    )
    fixed_fee_usd: Decimal = Field(
        default=Decimal(0), ge=0, le=MAX_MONEY_USD, allow_inf_nan=False,
        description="fee added to every request",
    )  # fmt: skip
    default_max_output_tokens: int = Field(
        default=4096,
        gt=0,
        le=MAX_TOKENS,
        description="output cap when neither the client nor the deployment sets one; "
        "sent upstream so the cost cannot exceed the reservation",
    )
    roomy_output_factor: int = Field(
        default=6,
        ge=1,
        le=64,
        description="an account with ample balance reserves this many times the output "
        "cap's cost, so the budget guard holds an answer to its reservation by UTF-8 bytes "
        "alone and never loads the tokenizer (~50 MB) for it; taken only with no spend cap "
        "and at least 8 times that amount available (else the cap's cost, as with 1: off)",
    )
    prompt_margin_fraction: Decimal = Field(
        default=Decimal("0.1"),
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="extra share of counted prompt tokens reserved, for upstream tokenizers "
        "that count differently from tollway's offline one",
    )
    demo_credit_usd: Decimal = Field(
        default=Decimal("1.00"), ge=0, le=MAX_MONEY_USD, allow_inf_nan=False,
        description="credit of the demo account",
    )  # fmt: skip
    balance_lease: bool = Field(
        default=False,
        description="admit requests from memory against a lease: a reservation this instance "
        "holds per account for many requests (tollway.billing.balance_lease), instead of a "
        "reservation per request; requests under a spend cap keep their own",
    )
    lease_requests: int = Field(
        default=64, ge=1, le=10_000,
        description="a lease grows by this many times a request's hold, while the account "
        "has 8 times that available (else by what a request misses)",
    )  # fmt: skip
    lease_idle_seconds: float = Field(
        default=2.0, gt=0, le=3600, description="a lease without requests this long is given back"
    )  # fmt: skip
    lease_max_age_seconds: float = Field(
        default=60.0, gt=0, le=86_400,
        description="a lease this old takes no new requests, gives back what it has free and "
        "closes when its last request settles",
    )  # fmt: skip
    reservation_max_age_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="longest allowed request; older open reservations are released and "
        "reported by the audit (keep above every deployment's timeouts.total)",
    )
    key_cache_ttl_seconds: float = Field(
        default=60.0, gt=0, description="a cached key is re-read from the database after this long"
    )
    key_refresh_interval_seconds: float = Field(
        default=2.0, gt=0, description="how often changed/revoked keys are pulled into the cache"
    )
    instance_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="liveness heartbeat period"
    )
    instance_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="an instance silent this long is dead; its reservations released",
    )

    def longest_open_seconds(self, request_id: str) -> float:
        """How long a reservation may stay open: the longest allowed request, or for a
        balance lease (request id ``lease_…``) its own age limit and then its last
        request's. Recovery releases a live instance's reservation past this, and the
        audit reports it."""
        if request_id.startswith(LEASE_PREFIX):
            return self.lease_max_age_seconds + self.reservation_max_age_seconds
        return self.reservation_max_age_seconds
