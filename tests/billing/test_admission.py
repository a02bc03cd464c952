"""Admission (402 before upstream), concurrency, partial settlement, price = ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tollway.auth import AuthResult
from tollway.billing.admission import Billing, Hold
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.chunks import Usage
from tollway.config import DeploymentConfig, Prices
from tollway.context import RequestContext
from tollway.errors import PaymentRequired
from tollway.providers.base import ChatRequest
from tollway.storage import open_storage
from tollway.storage.base import Account, NewEntry

# $0.01 per output token, $0.01 per input token: easy sums.
DEP = DeploymentConfig(
    provider="sim", model="m",
    prices=Prices(input_per_mtok=Decimal(10_000), output_per_mtok=Decimal(10_000)),
)  # fmt: skip
# roomy_output_factor=1: these tests check the reservation's arithmetic at the output cap
# (the roomy reservation has tests of its own in test_roomy_reservation.py)
CONFIG = BillingConfig(
    prompt_margin_fraction=Decimal(0), platform_fee_fraction=Decimal("0.1"), roomy_output_factor=1
)
TIGHT = BillingConfig(prompt_margin_fraction=Decimal(0), roomy_output_factor=1)


def count_words(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    """Local stand-in for tollway.tokens.count_prompt_tokens: one token per word."""
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def make_ctx(account: Account, request_id: str, words: int = 10, cap: int = 100) -> RequestContext:
    messages = [{"role": "user", "content": " ".join(["w"] * words)}]
    request = ChatRequest(body={}, model="m", stream=True, include_usage=True,
                          messages=messages, max_output_tokens=cap)  # fmt: skip
    ctx = RequestContext(request_id=request_id, account_id=account.id, key_id="k", request=request)
    ctx.account = AuthResult(account.id, "k", account.name, account)
    return ctx


async def finish(ctx: RequestContext, completion: int, partial: bool = False) -> None:
    """One upstream call through the request's budget, as the budget guard records it."""
    assert ctx.budget is not None and ctx.request is not None
    call = await ctx.budget.open_call(ctx.request)
    call.deployment = ctx.deployment = DEP
    ctx.served_model = "m"
    call.reported = Usage(prompt_tokens=10, completion_tokens=completion)
    call.state = "partial" if partial else "done"
    ctx.partial = partial


async def test_refused_with_402_when_balance_too_low(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "poor", credit_usd="1.00")
        billing = Billing(store, CONFIG, "inst", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "req-1")  # (10 + 100) × $0.01 = $1.10, +10% = $1.21
        with pytest.raises(PaymentRequired) as err:
            await billing.admit(ctx, [DEP])
        assert err.value.status == 402 and err.value.code == "insufficient_balance"
        assert "$1.210000" in err.value.message and "$1.000000 is available" in err.value.message
        assert ctx.reservation is None
        assert await billing.settle(ctx) is None  # nothing to settle, nothing written
        assert await store.entries(account.id) != [] and len(await store.entries(account.id)) == 1
    finally:
        await store.close()


async def test_reservation_takes_the_worst_deployment(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="100")
        dear = DeploymentConfig(
            provider="sim", model="dear", prices=Prices(input_per_mtok=0, output_per_mtok=20_000)
        )
        capped = DeploymentConfig(
            provider="sim", model="capped", max_output_tokens=5,
            prices=Prices(input_per_mtok=0, output_per_mtok=1_000_000),
        )  # fmt: skip
        billing = Billing(store, TIGHT, "i", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "r", words=0, cap=100)
        hold = await billing.admit(ctx, [DEP, dear])
        assert isinstance(hold, Hold) and hold.reservation.amount_micros == 2_000_000
        ctx2 = make_ctx(account, "r2", words=0, cap=0)
        assert ctx2.request is not None
        ctx2.request.max_output_tokens = None  # deployment cap 5 at $1/token; DEP default 4096
        hold2 = await billing.admit(ctx2, [capped])
        assert hold2 is not None and hold2.reservation.amount_micros == 5_000_000
    finally:
        await store.close()


async def test_fifty_concurrent_requests_never_overdraw(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "busy", credit_usd="20.00")
        billing = Billing(store, CONFIG, "inst", count_prompt_tokens=count_words)
        all_tried = asyncio.Event()
        tried = 0
        lowest = [10**18]

        async def one(i: int) -> bool:
            nonlocal tried
            ctx = make_ctx(account, f"req-{i}")
            try:
                await billing.admit(ctx, [DEP])
                admitted = True
            except PaymentRequired:
                admitted = False
            tried += 1
            if tried == 50:
                all_tried.set()
            now = await store.get_account(account.id)
            assert now is not None
            lowest[0] = min(lowest[0], now.available_micros)
            if admitted:
                await all_tried.wait()
                await finish(ctx, completion=50)
                try:
                    pass
                finally:
                    await asyncio.shield(billing.settle(ctx))
            return admitted

        results = await asyncio.gather(*(one(i) for i in range(50)))
        # Each reserves $1.21; $20 covers 16 at once. Each costs (10 + 50) × $0.01 × 1.1 = $0.66.
        assert results.count(True) == 16 and results.count(False) == 34
        assert lowest[0] >= 0
        final = await store.get_account(account.id)
        assert final is not None
        assert final.balance_micros == 20_000_000 - 16 * 660_000 and final.reserved_micros == 0
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_partial_settlement_and_price_equals_ledger(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        billing = Billing(store, CONFIG, "inst", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "req-partial")
        await billing.admit(ctx, [DEP])
        await finish(ctx, completion=7, partial=True)
        ctx.client_disconnected = True
        usage = billing.final_usage(ctx)
        assert usage is not None and usage.estimated  # cut short: counted, with what was reported
        shown = billing.price(ctx, usage).cost  # what the final chunk carries
        entry = await billing.settle(ctx)
        assert entry is not None and entry.entry.partial and entry.entry.kind == "debit"
        assert shown == {
            "base_cost_usd": Decimal("0.170000"),
            "platform_fee_usd": Decimal("0.017000"),
            "total_cost_usd": Decimal("0.187000"),
        }
        e = entry.entry
        assert (e.base_cost_micros, e.platform_fee_micros, e.total_cost_micros) == (
            170_000, 17_000, 187_000,
        )  # fmt: skip
        assert e.amount_micros == -187_000 and e.completion_tokens == 7
        assert "client disconnected" in (e.note or "")
        assert await billing.settle(ctx) is None  # a second settle writes nothing
        final = await store.get_account(account.id)
        assert final is not None and final.balance_micros == 5_000_000 - 187_000
        assert final.reserved_micros == 0 and await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_settle_survives_cancellation(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        billing = Billing(store, CONFIG, "inst", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "req-cancel")
        started = asyncio.Event()

        async def request() -> None:
            await billing.admit(ctx, [DEP])
            try:
                await finish(ctx, completion=3, partial=True)
                started.set()
                await asyncio.sleep(3600)  # streaming …
            finally:
                await asyncio.shield(billing.settle(ctx))

        task = asyncio.create_task(request())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the shielded settle finishes on its own
            entries = await store.entries(account.id)
            if entries[0].entry.kind == "debit":
                break
            await asyncio.sleep(0.05)
        assert entries[0].entry.kind == "debit" and entries[0].entry.request_id == "req-cancel"
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_failed_request_gets_a_zero_debit(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        billing = Billing(store, CONFIG, "inst", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "req-fail")
        await billing.admit(ctx, [DEP])
        ctx.error = "all deployments failed"
        entry = await billing.settle(ctx)
        assert entry is not None and entry.entry.total_cost_micros == 0
        assert "all deployments failed" in (entry.entry.note or "")
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_worst_case_counts_every_choice_and_the_dearest_prompt_price(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="100")
        prices = Prices(input_per_mtok=3, cached_input_per_mtok=Decimal("0.3"),
                        cache_write_per_mtok=Decimal("3.75"), cache_write_1h_per_mtok=6,
                        output_per_mtok=15)  # fmt: skip
        cached = DeploymentConfig(provider="sim", model="c", prices=prices)
        billing = Billing(store, TIGHT, "i", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "r", words=10, cap=100)
        assert ctx.request is not None
        ctx.request.body["n"] = 3
        hold = await billing.admit(ctx, [cached])
        # any prompt token may be a 1-hour cache write: 10 × 6 + 3 choices × 100 × 15
        assert hold is not None and hold.reservation.amount_micros == 60 + 4_500
    finally:
        await store.close()


async def test_extension_is_conditional_and_audited(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="2.00")
        other = await create_account(store, "b", credit_usd="1.00")
        billing = Billing(store, CONFIG, "inst", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "req-ext")  # reserves $1.21
        hold = await billing.admit(ctx, [DEP])
        assert hold is not None and ctx.budget is not None
        # the tab extends to what it needs: $1.60 of tool prices + 10 % fee = $1.76
        assert await ctx.budget.reserve_extra(Decimal("1.60"))
        assert (await store.get_account(account.id)).reserved_micros == 1_760_000  # type: ignore[union-attr]
        assert not await ctx.budget.reserve_extra(Decimal("1.90"))  # $2.09 > the balance
        refused = await store.extend(hold.reservation.id, 300_000)  # $0.24 left
        assert refused.reservation is None and refused.balance_micros == 2_000_000
        assert refused.reserved_micros == 1_760_000
        assert (await store.get_account(other.id)).reserved_micros == 0  # type: ignore[union-attr]
        assert await audit(store, CONFIG) == []
        await finish(ctx, completion=150)  # (10 + 150) × $0.01 × 1.1 = $1.76: all of it
        entry = await billing.settle(ctx)
        assert entry is not None and entry.entry.amount_micros == -1_760_000
        assert (await store.extend(hold.reservation.id, 1)).reservation is None  # settled
        final = await store.get_account(account.id)
        assert final is not None and (final.balance_micros, final.reserved_micros) == (240_000, 0)
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


async def test_audit_names_a_debit_above_its_reservation_and_a_bad_overage(dsn: str) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="5")
        reserved = await store.reserve(account.id, "req-over", "inst", 1_000)
        assert reserved.reservation is not None
        debit = NewEntry(
            account.id,
            "debit",
            -2_000,
            request_id="req-over",
            base_cost_micros=2_000,
            platform_fee_micros=0,
            total_cost_micros=2_000,
        )
        overage = NewEntry(
            account.id,
            "provider_overage",
            -5,
            request_id="req-over",
            base_cost_micros=1,
            platform_fee_micros=0,
            total_cost_micros=1,
        )
        await store.settle(reserved.reservation.id, debit, [overage])
        codes = sorted(v.code for v in await audit(store, CONFIG))
        assert codes == ["bad_overage", "debit_over_reservation"]
    finally:
        await store.close()


def _words_request(account: Account, request_id: str) -> RequestContext:
    ctx = make_ctx(account, request_id, words=0, cap=100)
    assert ctx.request is not None
    ctx.request.messages = [{"role": "user", "content": "hello " * 50}]
    return ctx


@pytest.mark.parametrize(("credit", "outcome"), [("100", "bound"), ("3", "exact"), ("1", "402")])
async def test_admission_counts_the_prompt_exactly_only_when_its_bound_is_refused(
    dsn: str, credit: str, outcome: str
) -> None:
    """The default counters: a byte bound first (no tokenizer), the exact count only if the
    bound's reservation is refused, so the bound never refuses what the count admits."""
    from tollway import tokens

    messages = [{"role": "user", "content": "hello " * 50}]
    bound = tokens.prompt_token_bound(messages)  # 3 + 3 + 300 bytes
    exact = tokens.count_prompt_tokens(messages)
    assert bound == 306 and exact < 60
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "tight", credit_usd=credit)
        billing = Billing(store, CONFIG, "inst")
        ctx = _words_request(account, "req-bound")
        if outcome == "402":
            with pytest.raises(PaymentRequired) as err:
                await billing.admit(ctx, [DEP])
            # the refusal names what the exact count needs: (exact + 100) × $0.01 + 10 %
            need = Decimal(exact + 100) * Decimal("0.011")
            assert f"${need:.6f}" in err.value.message
            return
        hold = await billing.admit(ctx, [DEP])
        assert hold is not None
        counted = bound if outcome == "bound" else exact
        assert hold.prompt_tokens_counted == counted
        assert hold.reservation.amount_micros == (counted + 100) * 11_000
        await finish(ctx, completion=100)  # the whole cap: the tab still fits the reservation
        entry = await billing.settle(ctx)
        assert entry is not None and -entry.entry.amount_micros <= hold.reservation.amount_micros
        assert await audit(store, CONFIG) == []
    finally:
        await store.close()


def test_a_funded_admission_never_loads_the_tokenizer(tmp_path: Any) -> None:
    """Billing alone keeps the ~50 MB tokenizer out of memory (a fresh interpreter)."""
    import subprocess
    import sys

    code = f"""
import asyncio
from decimal import Decimal
from tollway import tokens
from tollway.billing.admission import Billing
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.storage import open_storage
from tests.billing.test_admission import DEP, make_ctx

async def main():
    store = await open_storage("sqlite:///{tmp_path}/t.db")
    account = await create_account(store, "rich", credit_usd="1000")
    hold = await Billing(store, BillingConfig(), "inst").admit(make_ctx(account, "r"), [DEP])
    await store.close()
    print(hold is not None, tokens.loaded())

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]
