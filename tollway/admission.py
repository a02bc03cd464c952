"""Admission and settlement: reserve the worst case before any upstream call, debit the truth after.

The request path::

    auth = await keys.authenticate(headers.get("authorization"))
    ctx.account_id, ctx.key_id, ctx.account = auth.account_id, auth.key_id, auth
    await billing.admit(ctx, candidate_deployments)   # 402 here; upstream untouched
    try:
        ... stream; the meter stage attaches cost with billing.price(ctx, usage) ...
    finally:
        await asyncio.shield(billing.settle(ctx))

The reservation is: counted prompt tokens (plus ``prompt_margin_fraction``) at the
input price, plus the output cap at the output price, plus the fee — the largest
such figure over the deployments the router may pick. The output cap is
``effective_output_cap(...)``; the adapter must send exactly that upstream so the
real cost can never exceed the reservation. Settlement closes the reservation and
appends the debit in one transaction; if it cannot run (the process dies), crash
recovery releases the reservation and writes an ``unsettled`` entry.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tollway.auth import AuthResult
from tollway.billing.config import BillingConfig
from tollway.billing.pricing import (
    Cost,
    FeePolicy,
    compute_cost,
    fee_policy,
    prices_json,
    usd_str,
)
from tollway.chunks import Usage
from tollway.config import DeploymentConfig
from tollway.context import RequestContext
from tollway.errors import PaymentRequired
from tollway.providers.base import ChatRequest
from tollway.storage.base import LedgerEntry, NewEntry, Reservation, ReservationStore

__all__ = ["Billing", "Hold", "PromptCounter", "effective_output_cap"]

PromptCounter = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], int]


@dataclass(frozen=True, slots=True)
class Hold:
    """What ``admit`` leaves in ``ctx.reservation``: the reservation and the fee policy used."""

    reservation: Reservation
    policy: FeePolicy
    prompt_tokens_counted: int


def effective_output_cap(
    request: ChatRequest, deployment: DeploymentConfig, config: BillingConfig
) -> int:
    """The client's limit, else the deployment's default cap, else the billing default."""
    return (
        request.max_output_tokens
        or deployment.max_output_tokens
        or config.default_max_output_tokens
    )


def _default_counter() -> PromptCounter:
    from tollway.tokens import count_prompt_tokens

    return count_prompt_tokens


class Billing:
    """Reserves, prices and settles requests for one gateway instance."""

    def __init__(
        self,
        store: ReservationStore,
        config: BillingConfig,
        instance_id: str,
        *,
        count_prompt_tokens: PromptCounter | None = None,
    ) -> None:
        self._store = store
        self.config = config
        self.instance_id = instance_id
        self._count = count_prompt_tokens or _default_counter()

    def policy_for(self, ctx: RequestContext) -> FeePolicy:
        """The fee policy of the request: frozen at admission, else the account's."""
        if isinstance(ctx.reservation, Hold):
            return ctx.reservation.policy
        account = ctx.account.account if isinstance(ctx.account, AuthResult) else None
        return fee_policy(self.config, account)

    def worst_case(
        self, request: ChatRequest, deployments: Sequence[DeploymentConfig], policy: FeePolicy
    ) -> tuple[int, int]:
        """(reservation in micro-USD, prompt tokens counted) over the candidate deployments."""
        counted = self._count(request.messages, request.tools)
        prompt = math.ceil(counted * (1 + self.config.prompt_margin_fraction))
        worst = 0
        for dep in deployments:
            usage = Usage(
                prompt_tokens=prompt,
                completion_tokens=effective_output_cap(request, dep, self.config),
            )
            worst = max(worst, compute_cost(usage, dep.prices, policy).total_micros)
        return worst, counted

    async def admit(
        self, ctx: RequestContext, deployments: Sequence[DeploymentConfig]
    ) -> Hold | None:
        """Reserve the worst-case cost or raise PaymentRequired (402); sets ``ctx.reservation``."""
        if not self.config.enabled or ctx.account_id is None:
            return None
        if ctx.request is None:
            raise ValueError("admit() needs ctx.request")
        policy = self.policy_for(ctx)
        amount, counted = self.worst_case(ctx.request, deployments, policy)
        outcome = await self._store.reserve(
            ctx.account_id, ctx.request_id, self.instance_id, amount
        )
        if outcome.reservation is None:
            available = outcome.balance_micros - outcome.reserved_micros
            raise PaymentRequired(
                f"Insufficient balance: this request needs ${usd_str(amount)} reserved "
                f"(prompt and up to the output-token limit), but only "
                f"${usd_str(max(available, 0))} is available (balance "
                f"${usd_str(outcome.balance_micros)}, ${usd_str(outcome.reserved_micros)} "
                f"reserved by requests in flight)."
            )
        hold = Hold(outcome.reservation, policy, counted)
        ctx.reservation = hold
        return hold

    def cost_of(self, ctx: RequestContext, usage: Usage | None) -> Cost:
        """The request's cost from its usage and the serving deployment (zero if none)."""
        if usage is None or ctx.deployment is None:
            return Cost(0, 0)
        extra = Decimal(str(ctx.extra_usage_cost)) if ctx.extra_usage_cost else Decimal(0)
        return compute_cost(usage, ctx.deployment.prices, self.policy_for(ctx), extra)

    def price(self, ctx: RequestContext, usage: Usage) -> Usage:
        """``usage`` with ``cost`` filled (Decimal USD); the figures settle() will debit."""
        return dataclasses.replace(usage, cost=self.cost_of(ctx, usage).usage_cost())

    async def settle(self, ctx: RequestContext) -> LedgerEntry | None:
        """Release the reservation and debit the actual cost in one transaction.

        Call it from a ``finally`` wrapped in ``asyncio.shield`` for every request
        (it is a no-op when ``admit`` reserved nothing, and idempotent: a second
        call returns None because the request is already debited).
        """
        hold = ctx.reservation if isinstance(ctx.reservation, Hold) else None
        if hold is None or ctx.account_id is None:
            return None  # not admitted (billing off, unauthenticated, or refused with 402)
        usage = ctx.usage
        cost = self.cost_of(ctx, usage)
        dep = ctx.deployment
        debit = NewEntry(
            account_id=ctx.account_id,
            kind="debit",
            amount_micros=-cost.total_micros,
            request_id=ctx.request_id,
            model=ctx.served_model or ctx.requested_model,
            deployment=dep.id if dep is not None else None,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            prices=prices_json(dep.prices, self.policy_for(ctx)) if dep is not None else None,
            base_cost_micros=cost.base_micros,
            platform_fee_micros=cost.fee_micros,
            total_cost_micros=cost.total_micros,
            partial=bool(ctx.partial or ctx.client_disconnected),
            note=_note(ctx, usage),
        )
        return await self._store.settle(hold.reservation.id, debit)


def _note(ctx: RequestContext, usage: Usage | None) -> str | None:
    parts = []
    if ctx.error:
        parts.append(f"error: {ctx.error}"[:500])
    if ctx.client_disconnected:
        parts.append("client disconnected")
    if usage is not None and usage.estimated:
        parts.append("token counts estimated by tollway")
    if usage is None:
        parts.append("no upstream usage")
    return "; ".join(parts) or None
