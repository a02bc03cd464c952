"""Admission and settlement: reserve the worst case before any upstream call, debit the truth after.

The request path::

    auth = await keys.authenticate(headers.get("authorization"))
    ctx.account_id, ctx.key_id, ctx.account = auth.account_id, auth.key_id, auth
    await billing.admit(ctx, candidate_deployments)   # 402 here; upstream untouched
    try:
        ... stream: each upstream call is held to ctx.budget (the Tab), the meter
        ... stage attaches the cost billing.cost_of(ctx) will debit ...
    finally:
        await asyncio.shield(billing.settle(ctx))

The reservation is the worst case of the first upstream call: prompt tokens (an
upper bound from UTF-8 bytes, counted exactly only if that bound is refused; plus
``prompt_margin_fraction``) at the deployment's highest input price (a prompt
token may be a cache write), plus choices × output cap at the output price, plus
the fee — the largest such figure over the deployments the router may pick. The
output cap is ``effective_output_cap(...)``; adapters send it upstream. Each further
upstream call (platform-tool rounds) extends the reservation first (see
``tollway.billing.tab``). Settlement closes the reservation and appends the debit,
never more than the reservation, with a ``provider_overage`` line for any excess, in
one transaction; if it cannot run (the process dies), crash recovery releases the
reservation and writes an ``unsettled`` entry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tollway import tokens
from tollway.auth import AuthResult
from tollway.billing.config import BillingConfig
from tollway.billing.pricing import Cost, FeePolicy, fee_policy, priced, prices_json, usd_str
from tollway.billing.tab import (
    MAX_RESERVATION_MICROS,
    ROOMY_HEADROOM,
    PromptCount,
    PromptCounter,
    Tab,
    budget_exceeded,
    output_cap,
    worst_base_usd,
)
from tollway.chunks import Usage
from tollway.config import DeploymentConfig
from tollway.context import RequestContext
from tollway.errors import PaymentRequired
from tollway.providers.base import ChatRequest
from tollway.storage.base import (
    LedgerEntry,
    NewEntry,
    Reservation,
    ReservationStore,
    ReserveOutcome,
)

__all__ = ["Billing", "Hold", "PromptCounter", "effective_output_cap"]


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
    return output_cap(request, deployment, config.default_max_output_tokens)


def _default_counter() -> PromptCounter:
    from tollway.tokens import count_prompt_tokens

    return count_prompt_tokens


def _default_bound() -> PromptCounter:
    from tollway.tokens import prompt_token_bound

    return prompt_token_bound


class Billing:
    """Reserves, prices and settles requests for one gateway instance.

    Admission reserves against a cheap upper bound of the prompt's tokens
    (``tokens.prompt_token_bound``: UTF-8 bytes, no tokenizer); only when that
    reservation is refused does it count the prompt exactly (loading the tokenizer
    in a thread the first time) and try again, so the bound never refuses a request
    the exact count would admit. The counter that admitted the request is the one
    its ``Tab`` uses for every later call, so the reservation stays an upper bound.
    """

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
        self._default_policy = (config, fee_policy(config))
        self.instance_id = instance_id
        self._count = count_prompt_tokens or _default_counter()
        # an injected counter (tests) is used as is: one try, no tokenizer
        self._bound = count_prompt_tokens or _default_bound()

    def policy_for(self, ctx: RequestContext) -> FeePolicy:
        """The fee policy of the request: frozen at admission, else the account's (the
        configured one, built once per config, for an account without overrides)."""
        if isinstance(ctx.reservation, Hold):
            return ctx.reservation.policy
        account = ctx.account.account if isinstance(ctx.account, AuthResult) else None
        if account is None or (
            account.platform_fee_fraction is None and account.fixed_fee_micros is None
        ):
            config, policy = self._default_policy
            if config is not self.config:
                policy = fee_policy(self.config)
                self._default_policy = (self.config, policy)
            return policy
        return fee_policy(self.config, account)

    def worst_case(
        self,
        request: ChatRequest,
        deployments: Sequence[DeploymentConfig],
        policy: FeePolicy,
        count: PromptCounter | None = None,
        output_factor: int = 1,
    ) -> tuple[int, int]:
        """(reservation in micro-USD, prompt tokens counted) over the candidate deployments
        (``output_factor``: times the output cap, for a roomy reservation)."""
        counted = (count or self._count)(request.messages, request.tools)
        prompt = math.ceil(counted * (1 + self.config.prompt_margin_fraction))
        base = worst_base_usd(
            request, prompt, deployments, self.config.default_max_output_tokens, output_factor
        )
        return priced(base, policy).total_micros, counted

    def _roomy(
        self,
        ctx: RequestContext,
        deployments: Sequence[DeploymentConfig],
        policy: FeePolicy,
        count: PromptCounter,
        amount: int,
    ) -> tuple[int, int] | None:
        """(the roomy reservation, the available balance it needs), or None for none.

        With ``roomy_output_factor`` times the output cap reserved, the budget guard's
        byte bound of an answer stays within what the reservation pays for, so the
        tokenizer is not needed to hold the answer to it. Not with spend caps (a roomy
        hold would count against them) and only while the account has
        ``ROOMY_HEADROOM`` times it available.
        """
        factor = self.config.roomy_output_factor
        if factor == 1 or ctx.spend_caps or ctx.request is None:
            return None
        larger = self.worst_case(ctx.request, deployments, policy, count, factor)[0]
        if larger <= amount or larger > MAX_RESERVATION_MICROS:
            return None
        return larger, larger * ROOMY_HEADROOM

    async def _reserve(
        self, ctx: RequestContext, amount: int, roomy: tuple[int, int] | None = None
    ) -> ReserveOutcome | None:
        """The store's answer to reserving ``amount``, or ``roomy[0]`` when the account
        has ``roomy[1]`` available (None: more than any account may hold)."""
        assert ctx.account_id is not None
        if amount > MAX_RESERVATION_MICROS:
            return None
        # tollway.limits: the same reservation holds each spend cap (never a roomy one)
        return await self._store.reserve(
            ctx.account_id, ctx.request_id, self.instance_id, amount,
            caps=ctx.spend_caps, roomy=roomy, early=ctx.early_admission, figures=False,
        )  # fmt: skip

    async def admit(
        self, ctx: RequestContext, deployments: Sequence[DeploymentConfig]
    ) -> Hold | None:
        """Reserve the worst case or raise PaymentRequired (402); sets ``ctx.reservation``
        and ``ctx.budget``."""
        if not self.config.enabled or ctx.account_id is None:
            return None
        if ctx.request is None:
            raise ValueError("admit() needs ctx.request")
        policy = self.policy_for(ctx)
        count = PromptCount(self._bound)
        amount, counted = self.worst_case(ctx.request, deployments, policy, count)
        roomy = self._roomy(ctx, deployments, policy, count, amount)
        outcome = await self._reserve(ctx, amount, roomy)
        if (outcome is None or outcome.reservation is None) and self._bound is not self._count:
            await tokens.load()  # in a thread, the first time
            count = PromptCount(self._count)
            exact, counted = self.worst_case(ctx.request, deployments, policy, count)
            if exact < amount:
                amount = exact
                outcome = await self._reserve(ctx, amount)
        if outcome is None:
            raise PaymentRequired(
                f"This request's worst case (${usd_str(amount)}: its prompt and up to the "
                "output-token limit for every choice) is more than any account may hold; "
                "lower max_completion_tokens or n."
            )
        if outcome.refused_cap is not None:
            raise budget_exceeded(outcome.refused_cap, amount, ctx)
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
        # early admission: durable later (``ctx.committed()``; settlement waits for it)
        ctx.admission_commit, ctx.admission_record = outcome.committed, outcome.recorded
        ctx.budget = Tab(
            self._store, ctx, outcome.reservation, policy, deployments, count,
            admitted_count=counted, prompt_margin=self.config.prompt_margin_fraction,
            default_cap=self.config.default_max_output_tokens,
        )  # fmt: skip
        return hold

    def bill(self, ctx: RequestContext) -> tuple[Cost, Cost | None]:
        """(what the request is billed, the provider overage or None); zero if not admitted."""
        tab = ctx.budget
        if not isinstance(tab, Tab):
            return Cost(0, 0), None
        return tab.bill()

    def cost_of(self, ctx: RequestContext, usage: Usage | None = None) -> Cost:
        """What the request is billed (never above its reservation)."""
        return self.bill(ctx)[0]

    def final_usage(self, ctx: RequestContext) -> Usage | None:
        """The usage billed: every upstream call's, summed (else what the meter counted)."""
        tab = ctx.budget
        usage = tab.usage() if isinstance(tab, Tab) else None
        return usage if usage is not None else ctx.usage

    def price(self, ctx: RequestContext, usage: Usage) -> Usage:
        """``usage`` with ``cost`` filled (Decimal USD); the figures settle() will debit."""
        return usage.with_cost(self.cost_of(ctx).usage_cost())

    async def settle(self, ctx: RequestContext) -> LedgerEntry | None:
        """Release the reservation and debit the actual cost in one transaction.

        Call it from a ``finally`` wrapped in ``asyncio.shield`` for every request
        (it is a no-op when ``admit`` reserved nothing, and idempotent: a second
        call returns None because the request is already debited). The debit never
        exceeds the reservation; an excess is written as a ``provider_overage`` line
        (amount 0, the excess in its figures) in the same transaction.
        """
        hold = ctx.reservation if isinstance(ctx.reservation, Hold) else None
        if hold is None or ctx.account_id is None:
            return None  # not admitted (billing off, unauthenticated, or refused with 402)
        pending = ctx.admission_record
        if pending is not None:  # admitted early, not yet known durable: its commit first
            try:
                await asyncio.shield(pending)
            except Exception:  # noqa: BLE001 (not a cancellation: that is a BaseException)
                # the reservation was never recorded, so nothing was served (the handler
                # waits for this commit before its first byte): nothing to settle
                return None
        usage = self.final_usage(ctx)
        billed, overage = self.bill(ctx)
        if usage is not None:
            ctx.usage = usage.with_cost(billed.usage_cost())
        tab = ctx.budget if isinstance(ctx.budget, Tab) else None
        dep = ctx.deployment
        policy = self.policy_for(ctx)
        prices = _prices_used(tab, dep, policy)
        model = ctx.served_model or ctx.requested_model
        debit = NewEntry(
            account_id=ctx.account_id,
            kind="debit",
            amount_micros=-billed.total_micros,
            request_id=ctx.request_id,
            model=model,
            deployment=dep.id if dep is not None else None,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            prices=prices,
            base_cost_micros=billed.base_micros,
            platform_fee_micros=billed.fee_micros,
            total_cost_micros=billed.total_micros,
            partial=bool(ctx.partial or ctx.client_disconnected),
            note=_note(ctx, usage, overage),
            cache_write_tokens=usage.cache_write_tokens if usage else 0,
            cache_write_1h_tokens=usage.cache_write_1h_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
        )
        extra: list[NewEntry] = []
        if overage is not None:
            ctx.provider_overage = overage.usage_cost()
            extra.append(dataclasses.replace(
                debit,
                kind="provider_overage",
                amount_micros=0,
                base_cost_micros=overage.base_micros,
                platform_fee_micros=overage.fee_micros,
                total_cost_micros=overage.total_micros,
                note=(
                    f"the upstream usage cost ${usd_str(overage.total_micros)} more than the "
                    f"${usd_str(_hold_amount(tab, hold))} reserved; not charged to the account"
                ),
            ))  # fmt: skip
        held = _hold_amount(tab, hold)
        if ctx.spend_caps:
            return await self._store.settle(hold.reservation.id, debit, extra, capped=True,
                                            held_micros=held)
        return await self._store.settle(hold.reservation.id, debit, extra, held_micros=held)


def _hold_amount(tab: Tab | None, hold: Hold) -> int:
    """The reservation's final amount (with any extensions)."""
    return tab.reserved_micros if tab is not None else hold.reservation.amount_micros


def _prices_used(tab: Tab | None, dep: DeploymentConfig | None, policy: FeePolicy) -> str | None:
    """The prices JSON of the debit; every deployment's when several served the calls."""
    used = tab.deployments_used() if tab is not None else []
    if len(used) > 1:
        return json.dumps(
            {d.id: json.loads(prices_json(d.prices)) for d in used}
            | {"platform_fee_fraction": str(policy.fraction),
               "fixed_fee_usd": str(policy.fixed_usd)},
            sort_keys=True,
        )  # fmt: skip
    if used:
        dep = used[0]
    return prices_json(dep.prices, policy) if dep is not None else None


def _note(ctx: RequestContext, usage: Usage | None, overage: Cost | None) -> str | None:
    parts = []
    if ctx.error:
        parts.append(f"error: {ctx.error}"[:500])
    if ctx.client_disconnected:
        parts.append("client disconnected")
    if usage is not None and usage.estimated:
        parts.append("token counts estimated by tollway")
    if usage is None:
        parts.append("no upstream usage")
    if overage is not None:
        parts.append("capped at the reservation (see the provider_overage entry)")
    return "; ".join(parts) or None
