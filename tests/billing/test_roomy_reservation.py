"""The roomy reservation: an account with ample balance reserves several times the output
cap's cost, so the budget guard holds answers to it by their UTF-8 bytes, never loading the
tokenizer; an account without that headroom reserves exactly as before.

Real stores (SQLite file, PostgreSQL), billing's real admission and guard; the tokenizer
claims run in a fresh interpreter, where nothing else has loaded it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing.test_admission import DEP, count_words, finish, make_ctx
from tollway.billing.admission import Billing
from tollway.billing.audit import audit
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.billing.tab import ROOMY_HEADROOM
from tollway.errors import PaymentRequired
from tollway.storage import open_storage

FACTOR = 6
ROOMY = BillingConfig(prompt_margin_fraction=Decimal(0), roomy_output_factor=FACTOR)
TIGHT = BillingConfig(prompt_margin_fraction=Decimal(0), roomy_output_factor=1)
# DEP: $0.01 a token in and out; make_ctx: 10 prompt words, cap 100 → $1.10 tight
TIGHT_MICROS = (10 + 100) * 10_000
ROOMY_MICROS = (10 + FACTOR * 100) * 10_000


def _usd(micros: int) -> str:
    return str(Decimal(micros) / 1_000_000)


@pytest.mark.parametrize(
    ("credit", "reserved"),
    [
        (ROOMY_HEADROOM * ROOMY_MICROS, ROOMY_MICROS),  # exactly the headroom: roomy
        (ROOMY_HEADROOM * ROOMY_MICROS - 1, TIGHT_MICROS),  # a micro-dollar short: tight
        (TIGHT_MICROS, TIGHT_MICROS),  # the last of the balance: still admitted
        (TIGHT_MICROS - 1, None),  # 402, as without the roomy reservation
    ],
)
async def test_roomy_only_with_headroom(dsn: str, credit: int, reserved: int | None) -> None:
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd=_usd(credit))
        billing = Billing(store, ROOMY, "i", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "r")
        if reserved is None:
            with pytest.raises(PaymentRequired) as err:
                await billing.admit(ctx, [DEP])
            assert "needs $1.100000 reserved" in err.value.message  # the tight amount
            return
        hold = await billing.admit(ctx, [DEP])
        assert hold is not None and hold.reservation.amount_micros == reserved
        account_now = await store.get_account(account.id)
        assert account_now is not None and account_now.reserved_micros == reserved
        await finish(ctx, completion=100)
        entry = await billing.settle(ctx)
        assert entry is not None and entry.entry.amount_micros == -TIGHT_MICROS  # the truth
        assert await audit(store, ROOMY) == []
    finally:
        await store.close()


async def test_spend_caps_keep_the_tight_reservation(dsn: str) -> None:
    """A roomy hold would count against a spend cap: with caps, the cap's cost only."""
    from tollway.storage.sql_caps import Cap

    store = await open_storage(dsn)
    try:
        account = await create_account(store, "a", credit_usd="1000")
        billing = Billing(store, ROOMY, "i", count_prompt_tokens=count_words)
        ctx = make_ctx(account, "r")
        now = time.time()
        ctx.spend_caps = [Cap("account", account.id, "daily", now - 60, now + 86_400, 10**9)]
        hold = await billing.admit(ctx, [DEP])
        assert hold is not None and hold.reservation.amount_micros == TIGHT_MICROS
    finally:
        await store.close()


async def test_concurrent_admissions_take_roomy_holds_then_tight_ones(dsn: str) -> None:
    """60 requests at once on $100: roomy holds ($6.10) while $48.80 is available (9 of them,
    leaving $45.10), then the cap's cost ($1.10: 41 more), then 402; never an overdraft,
    every debit the truth, the books audited."""
    store = await open_storage(dsn)
    try:
        account = await create_account(store, "busy", credit_usd="100")
        billing = Billing(store, ROOMY, "i", count_prompt_tokens=count_words)
        everyone_tried = asyncio.Event()
        tried = 0
        lowest = [10**18]
        holds: list[int] = []

        async def one(i: int) -> bool:
            nonlocal tried
            ctx = make_ctx(account, f"req-{i}")
            try:
                hold = await billing.admit(ctx, [DEP])
            except PaymentRequired:
                hold = None
            tried += 1
            if tried == 60:
                everyone_tried.set()
            now = await store.get_account(account.id)
            assert now is not None
            lowest[0] = min(lowest[0], now.available_micros)
            if hold is None:
                return False
            holds.append(hold.reservation.amount_micros)
            await everyone_tried.wait()
            await finish(ctx, completion=50)
            await asyncio.shield(billing.settle(ctx))
            return True

        results = await asyncio.gather(*(one(i) for i in range(60)))
        assert results.count(True) == 50 and lowest[0] >= 0
        assert sorted(holds) == [TIGHT_MICROS] * 41 + [ROOMY_MICROS] * 9
        final = await store.get_account(account.id)
        assert final is not None and final.reserved_micros == 0
        assert final.balance_micros == 100_000_000 - 50 * (10 + 50) * 10_000
        assert await audit(store, ROOMY) == []
    finally:
        await store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    credit=st.integers(0, 3 * ROOMY_HEADROOM * ROOMY_MICROS),
    caps=st.lists(st.sampled_from([1, 10, 100, 400]), min_size=1, max_size=12),
)
def test_a_roomy_hold_never_refuses_what_a_tight_one_admits(credit: int, caps: list[int]) -> None:
    """Requests admitted one after another (none settled): each is reserved roomy only when
    the account then had ROOMY_HEADROOM times it available, else at the cap; each is
    refused only when even the cap's cost no longer fits; balance − reserved stays ≥ 0."""

    async def run(db: str) -> None:
        store = await open_storage(f"sqlite:///{db}")
        try:
            account = await create_account(store, "a", credit_usd=_usd(credit))
            billing = Billing(store, ROOMY, "i", count_prompt_tokens=count_words)
            for i, cap in enumerate(caps):
                before = await store.get_account(account.id)
                assert before is not None
                available = before.balance_micros - before.reserved_micros
                tight, roomy = (10 + cap) * 10_000, (10 + FACTOR * cap) * 10_000
                ctx = make_ctx(account, f"r{i}", cap=cap)
                if available < tight:
                    with pytest.raises(PaymentRequired):
                        await billing.admit(ctx, [DEP])
                    continue
                hold = await billing.admit(ctx, [DEP])
                assert hold is not None
                expected = roomy if available >= ROOMY_HEADROOM * roomy else tight
                assert hold.reservation.amount_micros == expected
                after = await store.get_account(account.id)
                assert after is not None
                assert after.balance_micros - after.reserved_micros == available - expected >= 0
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(str(Path(tmp) / "t.db")))


_GUARD = """
import asyncio, sys
from decimal import Decimal
from tollway import tokens
from tollway.auth import AuthResult
from tollway.billing.ledger import create_account
from tollway.billing.plugin import BillingFeature, billing_config
from tollway.chunks import Finish, TextDelta, Usage
from tollway.config import parse_settings
from tollway.context import RequestContext
from tollway.pipeline.budget import metered_call
from tollway.providers.base import ChatRequest

async def answer(_request):
    for _ in range(50):
        yield TextDelta("tok ")  # 4 bytes a token, as the benchmark's upstream sends
    yield Finish("length")
    yield Usage(prompt_tokens=12, completion_tokens=50)

async def main(db, factor):
    settings = parse_settings({
        "database": f"sqlite:///{db}",
        "providers": {"up": {"type": "openai", "api_key": "x",
                             "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"m": {"deployments": [{"provider": "up", "model": "up-m",
                   "prices": {"input_per_mtok": "1", "output_per_mtok": "2"}}]}},
        "billing": {"enabled": True, "roomy_output_factor": factor},
    })
    feature = BillingFeature(settings, billing_config(settings))
    await feature.start()
    try:
        account = await create_account(feature.store, "a", credit_usd="100")
        ctx = RequestContext(request_id="req_guard")
        auth = AuthResult(account.id, "key_a", "a", account)
        ctx.account, ctx.account_id, ctx.key_id = auth, auth.account_id, auth.key_id
        ctx.requested_model = "m"
        ctx.request = request = ChatRequest(
            body={}, model="m", stream=True, include_usage=True,
            messages=[{"role": "user", "content": "Say fifty words."}], max_output_tokens=50,
        )
        await feature.admit(ctx)
        ctx.deployment = settings.models["m"].deployments[0]
        texts = [e.text async for e in metered_call(request, ctx, ctx.budget, answer)
                 if isinstance(e, TextDelta)]
        await feature.settle(ctx)
        print(len(texts), tokens.loaded())
    finally:
        await feature.stop()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.parametrize(("factor", "loaded"), [(FACTOR, "False"), (1, "True")])
def test_the_guard_loads_the_tokenizer_only_past_what_is_reserved(
    tmp_path: Any, factor: int, loaded: str
) -> None:
    """50 tokens of 4 bytes at a cap of 50: 200 bytes. The roomy reservation pays for them
    by bytes alone; the cap's own reservation needs the exact count (the tokenizer)."""
    db = tmp_path / f"g{factor}.db"
    done = subprocess.run([sys.executable, "-c", _GUARD, str(db), str(factor)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["50", loaded]  # the whole answer, never cut
