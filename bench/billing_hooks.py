"""The CPU billing adds per request, measured on its own path without HTTP (precise where
the whole-server figure of scenario e moves by ±15 % between identical runs).

``python -m bench.billing_hooks [--requests N] [--chunks K] [--postgres [URL]]``: runs N
requests through billing's real path on a SQLite file (or a fresh PostgreSQL schema): the
admission hook (worst case, reservation), ``metered_call`` over a source of K text chunks
with the upstream's usage, the meter with billing's pricer, and the settlement hook (the
debit); and, beside it, the same source through the meter alone (billing off), so that
the difference is billing's. One at a time and 64 at a time (group commits); prints this
process's CPU per request (user + system, ``getrusage``, which counts the checkpoint
thread too; not the PostgreSQL server's).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.pg import PostgresSchemas
from tollway.auth import AuthResult
from tollway.chunks import Event, Finish, Start, TextDelta, Usage
from tollway.context import RequestContext
from tollway.ids import ordered_hex
from tollway.pipeline.budget import metered_call
from tollway.pipeline.meter import usage_meter
from tollway.providers.base import ChatRequest

__all__ = ["measure"]

MESSAGES = [{"role": "user", "content": "Say a few words."}]
PRICES = {"input_per_mtok": 1, "output_per_mtok": 2}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _settings(database: str) -> Any:
    from tollway.config import parse_settings

    return parse_settings({
        "database": database,
        "providers": {"up": {"type": "openai", "api_key": "x",
                             "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"bench-model": {"deployments": [
            {"provider": "up", "model": "bench-upstream", "prices": PRICES}]}},
        "billing": {"enabled": True},
    })  # fmt: skip


async def _source(chunks: int) -> AsyncIterator[Event]:
    """What an adapter yields for one streamed answer of ``chunks`` pieces of "tok "."""
    yield Start("bench-upstream")
    for _ in range(chunks):
        yield TextDelta("tok ")
    yield Finish("stop")
    yield Usage(prompt_tokens=12, completion_tokens=chunks)


def _request() -> ChatRequest:
    return ChatRequest(body={}, model="bench-model", stream=True, include_usage=True,
                       messages=MESSAGES, max_output_tokens=None)  # fmt: skip


async def measure(requests: int, batch: int, chunks: int, billing: bool,
                  postgres: str | None = None, early: bool = True) -> float:
    """CPU µs per request; ``billing`` False: the source through the meter alone.
    ``postgres``: a server's URL; the ledger is then in a fresh schema there. ``early``:
    admission may return before its reservation's commit, awaited before the first
    event is passed on (as chat completions do; False: as the other endpoints)."""
    from tollway.billing.ledger import create_account
    from tollway.billing.plugin import BillingFeature, billing_config

    schemas = PostgresSchemas(postgres) if postgres else None
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(await schemas.fresh("hooks") if schemas
                             else f"sqlite:///{Path(tmp) / 'billing.db'}")
        config = billing_config(settings)
        assert config is not None
        feature = BillingFeature(settings, config)
        await feature.start()
        assert feature.store is not None
        account = await create_account(feature.store, "bench", credit_usd="1000000")
        auth = AuthResult(account.id, "key_bench", "bench", account)
        deployment = settings.models["bench-model"].deployments[0]
        meter = usage_meter(feature.pricer if billing else None)

        async def one() -> None:
            ctx = RequestContext(request_id="req_" + ordered_hex(10))
            ctx.account, ctx.account_id, ctx.key_id = auth, auth.account_id, auth.key_id
            ctx.requested_model = "bench-model"
            ctx.request = request = _request()
            ctx.deployment = deployment
            if billing:
                ctx.early_admission = early
                await feature.admit(ctx)
                assert ctx.budget is not None
                budget = ctx.budget
                events = metered_call(request, ctx, budget, lambda _r: _source(chunks))
            else:
                events = _source(chunks)
            try:
                first = True
                async for _event in meter(events, ctx):
                    if first and billing:  # as the chat handler: durable before the first byte
                        first = False
                        await ctx.committed()
            finally:
                if billing:
                    await feature.settle(ctx)
            if billing:  # the figures are of a request that was really priced and debited
                assert ctx.usage is not None and ctx.usage.cost is not None, "not billed"

        try:
            for _ in range(200):  # warm: statements prepared, tokenizer loaded if needed
                await one()
            started = _cpu()
            for start in range(0, requests, batch):
                await asyncio.gather(*(one() for _ in range(start, min(start + batch, requests))))
            spent = (_cpu() - started) / requests * 1e6
            if billing:  # one debit per request, warm-up included
                row = await feature.store.db.fetchrow(
                    "SELECT COUNT(*) AS n FROM ledger_entries WHERE account_id = ?"
                    " AND kind = 'debit'", account.id)  # fmt: skip
                assert row is not None and row["n"] == requests + 200, row
            return spent
        finally:
            await feature.stop()
            if schemas:
                await schemas.drop_all()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.billing_hooks", description=__doc__)
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test",
                   metavar="URL", help="the ledger on PostgreSQL instead of a SQLite file")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64],
                   help="requests at a time (default: 1 64)")
    p.add_argument("--late", action="store_true",
                   help="admission waits for its reservation's commit (no early admission)")
    args = p.parse_args(argv)
    import uvloop

    for batch in args.batches:
        off = uvloop.run(measure(args.requests, batch, args.chunks, billing=False))
        on = uvloop.run(measure(args.requests, batch, args.chunks, billing=True,
                                postgres=args.postgres, early=not args.late))
        print(f"{batch:>2} at a time: billing off {off:6.1f} µs, on {on:6.1f} µs per request "  # noqa: T201
              f"({args.chunks} chunks): billing adds {on - off:6.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
