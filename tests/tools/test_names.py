"""Platform tool names are checked before anything is reserved or sent upstream.

A request naming a platform tool the gateway does not have is a 400 naming it,
whether the config declares some tools or none, and it costs nothing: no
reservation, no ledger entry (not even a fixed fee), no upstream call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import examples
from tests.support.servers import Upstream, run_tollway
from tollway.auth import KeyAuthenticator
from tollway.billing.config import BillingConfig
from tollway.billing.ledger import create_account
from tollway.storage import open_storage

PRICES = {"input_per_mtok": 1, "output_per_mtok": 4}


async def _never(request: Any, upstream: Upstream) -> Any:
    raise AssertionError("the upstream must not be called")


def _account(dsn: str) -> tuple[str, str]:
    async def go() -> tuple[str, str]:
        store = await open_storage(dsn)
        try:
            account = await create_account(store, "acme", credit_usd=Decimal("5"))
            new = await KeyAuthenticator(store, BillingConfig()).create_key(account.id)
        finally:
            await store.close()
        return account.id, new.secret

    return asyncio.run(go())


def _books(dsn: str, account_id: str) -> tuple[int, list[str]]:
    """(reserved micros, ledger entry kinds newest first)."""

    async def go() -> tuple[int, list[str]]:
        store = await open_storage(dsn)
        try:
            account = await store.get_account(account_id)
            entries = await store.entries(account_id)
        finally:
            await store.close()
        assert account is not None
        return account.reserved_micros, [e.entry.kind for e in entries]

    return asyncio.run(go())


@pytest.fixture(scope="module", params=["none declared", "calculator declared"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[openai.OpenAI, Upstream, str, str]]:
    dsn = f"sqlite:///{tmp_path_factory.mktemp('names')}/tollway.db"
    account_id, key = _account(dsn)
    with Upstream(_never) as upstream:
        config: dict[str, Any] = {
            "database": dsn,
            "billing": {"enabled": True, "fixed_fee_usd": "0.01"},
            "providers": {"up": {"type": "openai", "base_url": upstream.base_url}},
            "models": {"m": {"deployments": [{"provider": "up", "model": "m",
                                              "prices": PRICES}]}},
        }
        if request.param == "calculator declared":
            config["tools"] = {"calculator": {}}
        with run_tollway(config) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            yield client, upstream, dsn, account_id


def _ask(client: openai.OpenAI, names: Any, stream: bool) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        response = client.chat.completions.create(
            model="m", stream=stream, messages=[{"role": "user", "content": "hi"}],
            extra_body={"platform_tools": names})
        if stream:
            list(response)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_unknown_tool_is_a_400_that_costs_nothing(
        gateway: tuple[openai.OpenAI, Upstream, str, str], stream: bool) -> None:
    client, upstream, dsn, account_id = gateway
    error = _ask(client, ["no-such-tool"], stream)
    body = error.body
    assert isinstance(body, dict)
    assert body["code"] == "unknown_platform_tool" and body["param"] == "platform_tools"
    assert "no-such-tool" in body["message"]
    assert upstream.requests == []
    assert _books(dsn, account_id) == (0, ["credit"])


def test_platform_tools_must_be_a_list_of_names(
        gateway: tuple[openai.OpenAI, Upstream, str, str]) -> None:
    client, upstream, dsn, account_id = gateway
    error = _ask(client, "calculator", False)
    assert isinstance(error.body, dict) and error.body["param"] == "platform_tools"
    assert upstream.requests == [] and _books(dsn, account_id) == (0, ["credit"])


_NAME = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=20)


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_NAME, min_size=1, max_size=4))
def test_every_unknown_name_is_named(
        gateway: tuple[openai.OpenAI, Upstream, str, str], names: list[str]) -> None:
    client, upstream, dsn, account_id = gateway
    unknown = [n for n in names if n != "calculator"]
    if not unknown:
        return
    error = _ask(client, names, False)
    assert isinstance(error.body, dict) and error.body["code"] == "unknown_platform_tool"
    for name in unknown:
        assert name in error.body["message"]
    assert upstream.requests == []


def test_the_ledger_is_untouched_after_the_property(
        gateway: tuple[openai.OpenAI, Upstream, str, str]) -> None:
    _client, upstream, dsn, account_id = gateway
    assert upstream.requests == [] and _books(dsn, account_id) == (0, ["credit"])
