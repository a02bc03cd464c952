"""An adapter that never sends ``Start`` is still billed for what it answered.

``Start`` names the deployment that took the call; the bundled adapters all send it,
but a provider plugin need not. Such a call's answer (its text, its usage) is what the
router's deployment produced, so the debit prices it there, as the client's usage does.
Billing's real path on a SQLite file: admission, the metered call, the meter with
billing's pricer, settlement; the ledger is read back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop

from tollway.auth import AuthResult
from tollway.chunks import Event, Finish, TextDelta, Usage
from tollway.config import parse_settings
from tollway.context import RequestContext
from tollway.pipeline.budget import metered_call
from tollway.pipeline.meter import usage_meter
from tollway.providers.base import ChatRequest

PRICES = {"input_per_mtok": "1", "output_per_mtok": "2"}


async def _answer(usage: bool) -> AsyncIterator[Event]:
    for _ in range(30):
        yield TextDelta("word ")
    yield Finish("stop")
    if usage:
        yield Usage(prompt_tokens=12, completion_tokens=30)


async def _bill(db: Path, usage: bool) -> tuple[RequestContext, list[dict[str, object]]]:
    from tollway.billing.ledger import create_account
    from tollway.billing.plugin import BillingFeature, billing_config

    settings = parse_settings({
        "database": f"sqlite:///{db}",
        "providers": {"up": {"type": "openai", "api_key": "x",
                             "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"m": {"deployments": [{"provider": "up", "model": "up-m", "prices": PRICES}]}},
        "billing": {"enabled": True},
    })  # fmt: skip
    config = billing_config(settings)
    assert config is not None
    feature = BillingFeature(settings, config)
    await feature.start()
    try:
        assert feature.store is not None
        account = await create_account(feature.store, "a", credit_usd="10")
        auth = AuthResult(account.id, "key_a", "a", account)
        ctx = RequestContext(request_id="req_startless")
        ctx.account, ctx.account_id, ctx.key_id = auth, auth.account_id, auth.key_id
        ctx.requested_model = "m"
        ctx.request = request = ChatRequest(
            body={}, model="m", stream=True, include_usage=True,
            messages=[{"role": "user", "content": "Say a few words."}], max_output_tokens=None,
        )  # fmt: skip
        await feature.admit(ctx)
        ctx.deployment = settings.models["m"].deployments[0]  # the router's choice
        assert ctx.budget is not None
        events = metered_call(request, ctx, ctx.budget, lambda _r: _answer(usage))
        try:
            async for _event in usage_meter(feature.pricer)(events, ctx):
                pass
        finally:
            await feature.settle(ctx)
        rows = await feature.store.db.fetch(
            "SELECT kind, amount_micros, completion_tokens, total_cost_micros"
            " FROM ledger_entries WHERE request_id = ?", ctx.request_id,
        )  # fmt: skip
        return ctx, rows
    finally:
        await feature.stop()


@pytest.mark.parametrize("usage", [True, False], ids=["usage reported", "usage counted"])
def test_a_call_without_start_is_debited_what_the_client_is_shown(
    tmp_path: Path, usage: bool
) -> None:
    ctx, rows = uvloop.run(_bill(tmp_path / "b.db", usage))
    (debit,) = rows
    assert ctx.usage is not None and ctx.usage.cost is not None
    assert ctx.usage.completion_tokens == debit["completion_tokens"]
    assert debit["completion_tokens"] == 30 if usage else 30 <= debit["completion_tokens"] <= 31
    assert debit["kind"] == "debit"
    assert debit["total_cost_micros"] == -debit["amount_micros"] > 0  # type: ignore[operator]
    assert ctx.usage.cost["total_cost_usd"] * 1_000_000 == debit["total_cost_micros"]
