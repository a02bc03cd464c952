"""Early admission on SQLite: the reservation is decided at once, the upstream is called
while its group commit is pending, and nothing reaches the client before that commit.

The real gateway (uvicorn in a thread) with billing on a SQLite file, a real upstream
(aiohttp in a thread) that notes when each request arrives, the openai SDK and httpx as
clients. The group commit is held open ``WINDOW_S`` (the module's own knobs), so the
order of events is visible from outside: the upstream is reached well before the
commit, the client's first byte comes after it. A commit that fails is injected at the
sqlite3 boundary (a ``sqlite3.Connection`` subclass): the client gets a 503, nothing
of the answer, and the books show no trace of the request.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing.test_e2e import books, gateway_config, serve, setup_account
from tests.support.servers import Upstream, send_sse
from tollway.storage import open_storage
from tollway.storage import sqlite as sqlite_driver

WINDOW_S = 0.4  # how long each group commit stays open in these tests


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'early.db'}"


@contextmanager
def slow_commits() -> Iterator[None]:
    """Every group stays open ``WINDOW_S`` (its iterations never run out first); only
    while the gateway serves (setting up and reading the books stay quick)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite_driver, "COMMIT_AFTER_ITERATIONS", 10**9)
        patch.setattr(sqlite_driver, "COMMIT_WINDOW_S", WINDOW_S)
        yield


@contextmanager
def quick_commits() -> Iterator[None]:
    """The usual window again (to read the books while the gateway serves)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite_driver, "COMMIT_AFTER_ITERATIONS", QUICK[0])
        patch.setattr(sqlite_driver, "COMMIT_WINDOW_S", QUICK[1])
        yield


QUICK = (sqlite_driver.COMMIT_AFTER_ITERATIONS, sqlite_driver.COMMIT_WINDOW_S)


def _config(dsn: str, upstream_url: str) -> dict[str, Any]:
    """The e2e gateway with early admission always (by default only while the loop is
    behind; ``tests/providers/test_pacing.py`` covers that judgement)."""
    return {**gateway_config(dsn, upstream_url), "server": {"early_admission": "always"}}


def _known_client(url: str, key: str) -> openai.OpenAI:
    """The SDK on the gateway, its key already looked up once (that lookup is not timed)."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    client.models.list()
    return client


class _Arrivals:
    def __init__(self) -> None:
        self.times: list[float] = []


def _completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "u",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello from upstream"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }  # fmt: skip


def _stream() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        obj: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1,
                               "model": "u",
                               "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]}  # fmt: skip
        if usage is not None:
            obj["choices"], obj["usage"] = [], usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    return b"".join([
        chunk({"role": "assistant", "content": ""}), chunk({"content": "hello "}),
        chunk({"content": "from upstream"}), chunk({}, "stop"),
        chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}),
        b"data: [DONE]\n\n",
    ])  # fmt: skip


def _upstream(arrivals: _Arrivals) -> Upstream:
    async def handler(request: web.Request, up: Upstream) -> web.StreamResponse:
        arrivals.times.append(time.monotonic())
        body = up.requests[-1]
        if body.get("stream"):
            return await send_sse(request, _stream(), up)
        return web.json_response(_completion())

    return Upstream(handler)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, _Arrivals]]:
    arrivals = _Arrivals()
    with _upstream(arrivals) as up:
        yield up, arrivals


def _open_reservations(dsn: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        store = await open_storage(dsn)
        try:
            rows = await store.db.fetch("SELECT * FROM reservations WHERE state = 'open'")
            return [dict(r) for r in rows]
        finally:
            await store.close()

    return asyncio.run(go())


def test_the_upstream_is_called_before_the_commit_and_the_answer_comes_after(
    db: str, upstream: tuple[Upstream, _Arrivals]
) -> None:
    up, arrivals = upstream
    account_id, key = setup_account(db, "10.00")
    with slow_commits(), serve(_config(db, up.base_url)) as url:
        client = _known_client(url, key)
        started = time.monotonic()
        answer = client.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "hi"}])
        answered = time.monotonic()
        assert answer.choices[0].message.content == "hello from upstream"
        reached = arrivals.times[-1] - started
        assert reached < WINDOW_S * 0.6, reached  # not after the reservation's commit
        # not before it (uvloop's clock, which times the window, is read once an iteration)
        assert answered - started >= WINDOW_S * 0.9, answered - started

        started = time.monotonic()
        first = None
        for chunk in client.chat.completions.create(
            model="up", stream=True, messages=[{"role": "user", "content": "hi"}]
        ):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.monotonic()
        assert first is not None
        reached = arrivals.times[-1] - started
        assert reached < WINDOW_S * 0.6, reached
        assert first - started >= WINDOW_S * 0.9, first - started
        time.sleep(WINDOW_S * 2.5)  # the settlements' commits
    _, entries, violations = books(db, account_id)
    debits = [e.entry for e in entries if e.entry.kind == "debit"]
    assert len(debits) == 2 and all(d.total_cost_micros > 0 for d in debits)
    assert violations == []
    assert _open_reservations(db) == []


class _FailingCommit(sqlite3.Connection):
    """A connection whose next COMMIT of a group that reserved fails, as a full disk or an
    I/O error would make it fail (armed by ``fail``)."""

    fail = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reserved = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.startswith("INSERT INTO reservations"):
            self._reserved = True
        elif sql == "COMMIT":
            if _FailingCommit.fail and self._reserved:
                _FailingCommit.fail = False
                self._reserved = False
                raise sqlite3.OperationalError("disk I/O error (injected)")
            self._reserved = False
        elif sql == "ROLLBACK":
            self._reserved = False
        return super().execute(sql, *args)


@pytest.fixture
def failing_commits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", _FailingCommit)
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlite_driver.sqlite3, "connect", connect)
    yield
    _FailingCommit.fail = False


@pytest.mark.parametrize("stream", [False, True])
def test_a_reservation_whose_commit_fails_serves_nothing_and_books_nothing(
    db: str, failing_commits: None,
    upstream: tuple[Upstream, _Arrivals], stream: bool,
) -> None:
    up, arrivals = upstream
    account_id, key = setup_account(db, "10.00")
    before, _, _ = books(db, account_id)
    with slow_commits(), serve(_config(db, up.base_url)) as url:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        httpx.get(url + "/v1/models", headers=headers)
        _FailingCommit.fail = True
        reply = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert reply.status_code == 503, reply.text
        error = reply.json()["error"]
        assert error["code"] == "not_recorded" and "hello" not in reply.text
        assert len(arrivals.times) == 1  # the upstream was called meanwhile
        time.sleep(WINDOW_S * 2.5)  # whatever settlement does, it has committed
        with quick_commits():
            after, entries, violations = books(db, account_id)
        assert after.balance_micros == before.balance_micros
        assert after.reserved_micros == 0
        assert [e.entry.kind for e in entries] == [e for e in ["credit"]]
        assert violations == []
        # the next request is served and billed as usual
        again = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert again.status_code == 200 and "hello" in again.text
        time.sleep(WINDOW_S * 2.5)
    _, entries, violations = books(db, account_id)
    assert [e.entry.kind for e in entries].count("debit") == 1
    assert violations == []
    assert _open_reservations(db) == []


def test_a_client_gone_before_the_commit_is_settled_after_it(
    db: str, upstream: tuple[Upstream, _Arrivals]
) -> None:
    up, arrivals = upstream
    account_id, key = setup_account(db, "10.00")
    with slow_commits(), serve(_config(db, up.base_url)) as url:
        headers = {"Authorization": f"Bearer {key}"}
        httpx.get(url + "/v1/models", headers=headers)
        body = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with pytest.raises(httpx.ReadTimeout):  # leaves before the first byte
            httpx.post(url + "/v1/chat/completions", json=body, headers=headers,
                       timeout=WINDOW_S / 4)
        assert len(arrivals.times) == 1
        time.sleep(WINDOW_S * 3)
    _, entries, violations = books(db, account_id)
    assert violations == []
    assert _open_reservations(db) == []
    debits = [e.entry for e in entries if e.entry.kind == "debit"]
    assert len(debits) == 1  # settled (what the upstream generated is the provider's cost)


@pytest.mark.parametrize("mode", ["never", "under_load"])
def test_otherwise_the_upstream_waits_for_the_commit(
    db: str, upstream: tuple[Upstream, _Arrivals], mode: str
) -> None:
    """``never``, and ``under_load`` while the loop keeps up (the default): admission
    returns once the reservation is committed, as before."""
    up, arrivals = upstream
    _, key = setup_account(db, "10.00")
    config = {**gateway_config(db, up.base_url), "server": {"early_admission": mode}}
    with slow_commits(), serve(config) as url:
        client = _known_client(url, key)
        started = time.monotonic()
        client.chat.completions.create(model="up", messages=[{"role": "user", "content": "hi"}])
        reached = arrivals.times[-1] - started
        assert reached >= WINDOW_S * 0.9, reached


# -- the protocol as a property: concurrent requests, commits that fail, clients that leave --

_PRICES = {"input_per_mtok": 10, "output_per_mtok": 20}


def _settings(dsn: str) -> Any:
    from tollway.config import parse_settings

    return parse_settings({
        "database": dsn,
        "providers": {"up": {"type": "openai", "api_key": "x",
                             "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"m": {"deployments": [
            {"provider": "up", "model": "u", "prices": _PRICES}]}},
        "billing": {"enabled": True},
    })  # fmt: skip


@st.composite
def _rounds(draw: Any) -> tuple[int, list[list[tuple[int, bool]]], list[bool]]:
    """(credit µ$, rounds of concurrent requests (output pieces, leaves before the commit),
    whether each round's first commit with a reservation fails)."""
    credit = draw(st.integers(0, 60_000))
    rounds = draw(st.lists(st.lists(st.tuples(st.integers(0, 40), st.booleans()),
                                    min_size=1, max_size=12), min_size=1, max_size=5))
    fails = draw(st.lists(st.booleans(), min_size=len(rounds), max_size=len(rounds)))
    return credit, rounds, fails


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(workload=_rounds())
def test_early_admission_keeps_the_books(
    tmp_path_factory: Any, failing_commits: None, workload: Any
) -> None:
    """Billing's real admission and settlement, admitted early, many at a time: whatever
    commits fail and whoever leaves, the books balance, no balance goes below zero, a
    request whose reservation was not recorded is never served nor debited, and every
    other admitted request is debited once (also when its client left before the commit)."""
    from tollway.auth import AuthResult
    from tollway.billing.audit import audit
    from tollway.billing.ledger import create_account
    from tollway.billing.plugin import BillingFeature, billing_config
    from tollway.chunks import Finish, Start, TextDelta, Usage
    from tollway.context import RequestContext
    from tollway.errors import NotRecorded, PaymentRequired
    from tollway.pipeline.budget import metered_call
    from tollway.providers.base import ChatRequest

    credit, rounds, fails = workload
    dsn = f"sqlite:///{tmp_path_factory.mktemp('early') / 'p.db'}"
    settings_ = _settings(dsn)

    async def source(pieces: int) -> Any:
        yield Start("u")
        for _ in range(pieces):
            yield TextDelta("tok ")
        yield Finish("stop")
        yield Usage(prompt_tokens=5, completion_tokens=pieces)

    async def go() -> None:
        config = billing_config(settings_)
        assert config is not None
        feature = BillingFeature(settings_, config)
        await feature.start()
        assert feature.store is not None
        store = feature.store
        try:
            account = await create_account(store, "p", credit_usd=credit / 1_000_000)
            auth = AuthResult(account.id, "key_p", "p", account)
            deployment = settings_.models["m"].deployments[0]
            outcomes: dict[str, str] = {}

            async def one(n: str, pieces: int, leaves: bool) -> None:
                ctx = RequestContext(request_id=n)
                ctx.account, ctx.account_id, ctx.key_id = auth, auth.account_id, auth.key_id
                ctx.requested_model = "m"
                ctx.request = ChatRequest(body={}, model="m", stream=True, include_usage=True,
                                          messages=[{"role": "user", "content": "hi"}],
                                          max_output_tokens=64)  # fmt: skip
                ctx.deployment = deployment
                ctx.early_admission = True
                events: Any = None
                try:
                    try:
                        await feature.admit(ctx)
                    except PaymentRequired:
                        outcomes[n] = "refused"
                        return
                    except sqlite3.OperationalError:  # a hold that waited for its commit
                        outcomes[n] = "not recorded"  # (the handler answers 500: nothing
                        return  # served, as before early admission)
                    assert ctx.budget is not None
                    events = metered_call(ctx.request, ctx, ctx.budget,
                                          lambda _r: source(pieces))  # fmt: skip
                    async for _ in events:
                        if leaves:
                            raise asyncio.CancelledError  # gone before the first byte
                        try:
                            await ctx.committed()
                        except NotRecorded:
                            outcomes[n] = "not recorded"
                            raise
                        break  # served from here on (the rest is the same bill)
                    async for _ in events:
                        pass
                    outcomes[n] = "served"
                except (asyncio.CancelledError, NotRecorded):
                    outcomes.setdefault(n, "left")
                finally:
                    if events is not None:
                        await events.aclose()
                    await feature.settle(ctx)

            for index, (batch, fail) in enumerate(zip(rounds, fails, strict=True)):
                _FailingCommit.fail = fail
                names = [f"req_{index}_{i}" for i in range(len(batch))]
                await asyncio.gather(*(one(n, p, leaves)
                                       for n, (p, leaves) in zip(names, batch, strict=True)))
                _FailingCommit.fail = False
                acct = await store.get_account(account.id)
                assert acct is not None and acct.balance_micros >= 0
                assert acct.reserved_micros == 0  # every admitted request settled
            entries = await store.entries(account.id)
            debits = {e.entry.request_id: e.entry for e in entries if e.entry.kind == "debit"}
            for name, outcome in outcomes.items():
                if outcome in ("refused", "not recorded"):
                    assert name not in debits, (name, outcome)
                else:  # served, or left after a recorded admission: billed once
                    assert name in debits or outcome == "left", (name, outcome)
            acct = await store.get_account(account.id)
            assert acct is not None
            assert acct.balance_micros == credit - sum(-d.amount_micros for d in debits.values())
            assert await audit(store, config) == []
        finally:
            await feature.stop()

    asyncio.run(go())
