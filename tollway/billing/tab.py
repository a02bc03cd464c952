"""A request's running tab: its reservation, its upstream calls, and what they cost.

``Tab`` is what billing puts in ``ctx.budget`` at admission (it implements
``tollway.pipeline.budget.Budget``). The invariant it keeps: before every upstream
call the reservation covers the cost so far plus the worst case of that call, and
before platform tools run it covers their prices; the reservation is extended with
one conditional update when it does not (``ReservationStore.extend``). The cost is
the sum over the calls, each at the prices of the deployment that served it, plus
the platform-tool prices, by the rounding rule of ``tollway.billing.pricing``; what
is billed never exceeds the reservation.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from tollway.billing.pricing import (
    Cost,
    FeePolicy,
    base_cost_usd,
    capped,
    largest_within,
    priced,
    usd_str,
)
from tollway.calls import CallRecord
from tollway.chunks import Usage
from tollway.config import DeploymentConfig
from tollway.context import RequestContext
from tollway.errors import PaymentRequired
from tollway.providers.base import ChatRequest
from tollway.storage.base import Reservation, ReservationStore

__all__ = [
    "CUT_SLACK_TOKENS",
    "MAX_RESERVATION_MICROS",
    "ROOMY_HEADROOM",
    "PromptCount",
    "PromptCounter",
    "Tab",
    "budget_exceeded",
    "output_cap",
    "worst_base_usd",
]

PromptCounter = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], int]

_MILLION = Decimal(1_000_000)
_HALF_MICRO = Decimal("0.0000005")
# The most one request may hold: far beyond any real request, far below BIGINT.
MAX_RESERVATION_MICROS = 10**15  # $1,000,000,000
_UNLIMITED = 1 << 62
CUT_SLACK_TOKENS = 16  # with the prompt margin: how far past its budget a call may run
# a roomy reservation (BillingConfig.roomy_output_factor) is taken only while the account
# has this many times it available, so it never takes the last of a balance from others
ROOMY_HEADROOM = 8


def output_cap(request: ChatRequest, deployment: DeploymentConfig, default: int) -> int:
    """The output cap per choice: the client's, else the deployment's, else the default."""
    return request.max_output_tokens or deployment.max_output_tokens or default


def worst_base_usd(
    request: ChatRequest,
    prompt_tokens: int,
    deployments: Sequence[DeploymentConfig],
    default_cap: int,
    output_factor: int = 1,
) -> Decimal:
    """The dearest one upstream call of ``request`` may be, over ``deployments``.

    Every prompt token at the deployment's highest input price (any of them may be
    a cache write), plus choices × cap output tokens at its output price (× ``output_factor``
    for a roomy reservation).
    """
    worst = Decimal(0)
    choices = request.choices * output_factor
    for dep in deployments:
        prices = dep.prices
        cap = output_cap(request, dep, default_cap)
        per_mtok = prompt_tokens * prices.highest_input + choices * cap * prices.output_per_mtok
        worst = max(worst, per_mtok / _MILLION)
    return worst


def budget_exceeded(
    cap: Any, amount_micros: int, ctx: RequestContext | None = None
) -> PaymentRequired:
    """The 402 for a spend cap that cannot take a reservation (names the cap and its reset);
    recorded in ``ctx.limit_hit`` for traces and metrics."""
    if ctx is not None:
        ctx.limit_hit = {"scope": cap.scope, "limit": "spend_cap", "period": cap.period,
                         "resets_at": cap.resets_at}  # fmt: skip
    return PaymentRequired(
        f"Budget exceeded: this request needs ${usd_str(amount_micros)} reserved (prompt and "
        f"up to the output-token limit), more than is left of {cap.describe()}.",
        code="budget_exceeded",
    )


class PromptCount:
    """Prompt tokens of a growing conversation, counting only what is new.

    The platform-tool loop only appends messages, so each round counts its new
    messages; a conversation that changed otherwise is counted again in full.
    """

    def __init__(self, counter: PromptCounter) -> None:
        self._counter = counter
        self._empty = counter([], None)  # what a conversation costs with no message
        self._messages = 0
        self._last: Any = None
        self._message_tokens = self._empty
        self._tools: Any = None
        self._tools_len = 0
        self._tool_tokens = 0

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        k = self._messages
        if k > len(messages) or (k and messages[k - 1] is not self._last):
            k, self._message_tokens = 0, self._empty
        if len(messages) > k:
            self._message_tokens += self._counter(messages[k:], None) - self._empty
            self._messages, self._last = len(messages), messages[-1]
        if tools is not self._tools or len(tools or ()) != self._tools_len:
            self._tools, self._tools_len = tools, len(tools or ())
            self._tool_tokens = self._counter([], tools) - self._empty if tools else 0
        return self._message_tokens + self._tool_tokens


class Tab:
    """The running account of one admitted request (``ctx.budget``)."""

    def __init__(
        self,
        store: ReservationStore,
        ctx: RequestContext,
        reservation: Reservation,
        policy: FeePolicy,
        deployments: Sequence[DeploymentConfig],
        count: PromptCount,
        *,
        admitted_count: int,
        prompt_margin: Decimal,
        default_cap: int,
    ) -> None:
        self._store = store
        # ctx holds the tab (ctx.budget): a strong reference back would make every billed
        # request's context a reference cycle, left for the garbage collector to find
        self._ctx_ref = weakref.ref(ctx)
        self.reservation = reservation
        self.reserved_micros = reservation.amount_micros
        self.policy = policy
        self._deployments = deployments
        self._count = count
        self._admitted_count = admitted_count
        self._margin_factor = 1 + prompt_margin  # prompt tokens × this: the margin added
        self._default_cap = default_cap
        self.calls: list[CallRecord] = []
        self.extensions = 0
        self._billed: tuple[Any, tuple[Cost, Cost | None]] | None = None

    @property
    def _ctx(self) -> RequestContext:
        ctx = self._ctx_ref()
        if ctx is None:
            raise RuntimeError("the request this tab belongs to is gone")
        return ctx

    # -- the Budget protocol ------------------------------------------------------

    async def open_call(self, request: ChatRequest) -> CallRecord:
        """Cover the spent cost plus this call's worst case, or raise PaymentRequired."""
        counted = self._count(request.messages, request.tools)
        if self.calls or counted != self._admitted_count or self._ctx.extra_usage_cost:
            prompt = math.ceil(counted * self._margin_factor)
            worst = worst_base_usd(request, prompt, self._deployments, self._default_cap)
            need = priced(self.spent_base_usd() + worst, self.policy).total_micros
            refusal = await self._cover(need)
            if refusal is not None:
                raise refusal
        # else: the first call of the request admission counted, which is what it reserved
        call = CallRecord(request, counted)
        # whatever deployment serves it, the reservation pays for every choice's cap
        call.floor = request.choices * (request.max_output_tokens or self._default_cap)
        self.calls.append(call)
        return call

    def output_limit(self, call: CallRecord) -> int:
        """Output tokens ``call`` may produce before the reservation is spent."""
        dep = call.deployment
        if dep is None or dep.prices.output_per_mtok == 0:
            return _UNLIMITED
        # any exact base below B + ½ µ$ rounds to at most B, whose total fits
        # (``scaleb``: the micro-USD as USD, exactly, without ``micros_to_usd``'s division)
        room = Decimal(largest_within(self.reserved_micros, self.policy).base_micros).scaleb(-6)
        room += _HALF_MICRO - self.spent_base_usd(excluding=call)
        prompt = math.ceil(call.prompt_counted * self._margin_factor)
        room -= prompt * dep.prices.highest_input / _MILLION
        if room <= 0:
            return 0
        per_token = dep.prices.output_per_mtok / _MILLION
        paid = max(math.ceil(room / per_token) - 1, 0)  # the most whose cost is below room
        # an upstream that honours its cap may count a few more tokens than tollway
        # does: it is only cut once past the margin tollway allows for that
        return math.ceil(paid * self._margin_factor) + CUT_SLACK_TOKENS

    async def reserve_extra(self, usd: Decimal) -> bool:
        """Cover ``usd`` of platform-tool prices on top of the cost so far."""
        need = priced(self.spent_base_usd() + usd, self.policy).total_micros
        return await self._cover(need) is None

    def usage(self) -> Usage | None:
        """Every answered call's usage, summed."""
        total: Usage | None = None
        for call in self.calls:
            usage = call.usage()
            if usage is not None:
                total = usage if total is None else total.plus(usage)
        return total

    # -- cost ----------------------------------------------------------------------

    def spent_base_usd(self, excluding: CallRecord | None = None) -> Decimal:
        """Exact base cost so far: each answered call at its deployment's prices, plus tools."""
        extra = self._ctx.extra_usage_cost
        base = Decimal(str(extra)) if extra else Decimal(0)
        for call in self.calls:
            if call is excluding or call.deployment is None:
                continue
            usage = call.usage()
            if usage is not None:
                base += base_cost_usd(usage, call.deployment.prices)
        return base

    def bill(self) -> tuple[Cost, Cost | None]:
        """(what is billed, the provider overage beyond the reservation or None).

        The meter prices the final usage and settlement debits it: the second asks
        again with nothing changed, so the answer is kept until something does.
        """
        key = (
            self.reserved_micros,
            self._ctx.extra_usage_cost,
            tuple(
                # the text's length, not the pieces' count: compaction changes the count
                (id(c.reported), c.state, sum(map(len, c.pieces)),
                 sum(len(t) for texts in c.more.values() for t in texts))
                for c in self.calls
            ),
        )
        if self._billed is not None and self._billed[0] == key:
            return self._billed[1]
        result = capped(
            priced(self.spent_base_usd(), self.policy), self.reserved_micros, self.policy
        )
        self._billed = (key, result)
        return result

    def deployments_used(self) -> list[DeploymentConfig]:
        """The distinct deployments that answered, in order."""
        out: list[DeploymentConfig] = []
        for call in self.calls:
            if call.deployment is not None and call.deployment not in out:
                out.append(call.deployment)
        return out

    # -- reservation -------------------------------------------------------------

    async def _cover(self, need_micros: int) -> PaymentRequired | None:
        """Extend the reservation to ``need_micros``; the refusal when the account cannot."""
        missing = need_micros - self.reserved_micros
        if missing <= 0:
            return None
        if need_micros <= MAX_RESERVATION_MICROS:
            caps = self._ctx.spend_caps
            if caps:
                outcome = await self._store.extend(self.reservation.id, missing, caps=caps)
            else:
                outcome = await self._store.extend(self.reservation.id, missing)
            if outcome.refused_cap is not None:
                return budget_exceeded(outcome.refused_cap, missing, self._ctx)
            if outcome.reservation is not None:
                self.reserved_micros = outcome.reservation.amount_micros
                self.extensions += 1
                return None
            available = max(outcome.balance_micros - outcome.reserved_micros, 0)
        else:
            available = 0
        return PaymentRequired(
            f"Insufficient balance: the next upstream call of this request needs "
            f"${usd_str(missing)} more reserved (${usd_str(need_micros)} in all), but only "
            f"${usd_str(available)} is available."
        )
