"""``Tab.bill`` keeps its answer until something it depends on changes. A call's text
is compacted as it streams (its pieces joined), so the count of pieces can come back to
an earlier value with more text behind it: the key is the text's length, not that count."""

from __future__ import annotations

from decimal import Decimal

from tollway.billing.pricing import FeePolicy
from tollway.billing.tab import PromptCount, Tab
from tollway.calls import CallRecord
from tollway.config import DeploymentConfig
from tollway.context import RequestContext
from tollway.providers.base import ChatRequest
from tollway.storage.base import Reservation

DEP = DeploymentConfig.model_validate(
    {"provider": "p", "model": "m", "prices": {"input_per_mtok": 1, "output_per_mtok": 2}})


def _tab(ctx: RequestContext) -> Tab:
    reservation = Reservation("res_1", ctx.request_id, "acct", "inst", 10**9, "open", 0.0)
    return Tab(None, ctx, reservation, FeePolicy(), [DEP], PromptCount(lambda _m, _t: 0),  # type: ignore[arg-type]
               admitted_count=5, prompt_margin=Decimal(0), default_cap=1000)


def test_the_bill_follows_the_text_when_compaction_brings_the_pieces_back() -> None:
    ctx = RequestContext(request_id="req_1")
    tab = _tab(ctx)
    call = CallRecord(ChatRequest(body={}, model="m", stream=True, include_usage=True,
                                  messages=[{"role": "user", "content": "hi"}]), 5)
    call.deployment = DEP
    tab.calls.append(call)
    call.pieces += ["word " * 50, "more "]
    first = tab.bill()[0]
    call.compact(0)  # one piece now
    call.pieces.append("word " * 400)  # two pieces again, far more text
    second = tab.bill()[0]
    assert second.base_micros > first.base_micros
    assert tab.bill()[0] == second  # nothing changed: the kept answer
