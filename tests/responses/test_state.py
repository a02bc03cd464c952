"""Stored responses: ``previous_response_id`` (the Agents-SDK-style function-call loop),
``GET``/``DELETE /v1/responses/{id}``, ``input_items``; per account, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import sim_config
from tests.support.servers import serve_app
from tollway.assembly import create_app
from tollway.config import parse_settings
from tollway.errors import AuthenticationError
from tollway.plugins import Host
from tollway.responses import ResponsesPlugin


@dataclass
class Auth:
    account_id: str
    key_id: str


KEYS = {"sk-alice": Auth("acct_alice", "key_a"), "sk-bob": Auth("acct_bob", "key_b")}


class KeyTable:
    name = "key-table"

    def register(self, host: Host) -> None:
        async def authenticate(authorization: str | None) -> Auth:
            token = (authorization or "").removeprefix("Bearer ").strip()
            if token not in KEYS:
                raise AuthenticationError("Incorrect API key provided.")
            return KEYS[token]

        host.authenticator(authenticate)


@contextmanager
def gateway(dsn: str) -> Iterator[str]:
    settings = parse_settings({**sim_config(), "database": dsn})
    with serve_app(create_app(settings, [KeyTable(), ResponsesPlugin()])) as url:
        yield url


def client(url: str, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


TOOLS: Any = [{"type": "function", "name": "weather", "description": "the weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_function_call_loop_with_previous_response_id(dsn: str) -> None:
    with gateway(dsn) as url:
        c = client(url)
        first = c.responses.create(model="sim-tool", input="weather in Paris?", tools=TOOLS)
        assert first.store is True
        call = next(o for o in first.output if o.type == "function_call")
        # the Agents SDK sends only the tool output, continuing from the last response
        with c.responses.stream(model="sim-tool", tools=TOOLS, previous_response_id=first.id,
                                input=[{"type": "function_call_output",
                                        "call_id": call.call_id,
                                        "output": json.dumps({"sky": "sunny"})}]) as s:
            second = s.get_final_response()
        assert second.previous_response_id == first.id and second.output_text
        assert all(o.type != "function_call" for o in second.output)
        third = c.responses.create(model="sim-echo", input="and tomorrow?",
                                   previous_response_id=second.id)  # fmt: skip
        assert third.output_text.endswith("You said: and tomorrow?")
        got = c.responses.retrieve(second.id)
        assert got.id == second.id and got.output_text == second.output_text
        items = c.responses.input_items.list(second.id)
        assert [i.type for i in items.data] == ["function_call_output"]
        assert all(i.id for i in items.data)
        deleted = c.responses.delete(second.id)
        assert deleted is None or getattr(deleted, "deleted", True)
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve(second.id)
        with pytest.raises(openai.NotFoundError) as err:
            c.responses.create(model="sim-echo", input="x", previous_response_id=second.id)
        assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_another_account_cannot_read_continue_or_delete(dsn: str) -> None:
    with gateway(dsn) as url:
        mine = client(url).responses.create(model="sim-echo", input="secret plans")
        bob = client(url, "sk-bob")
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.input_items.list(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.create(model="sim-echo", input="x", previous_response_id=mine.id)
        anon = httpx.get(f"{url}/v1/responses/{mine.id}")
        assert anon.status_code == 401
        assert client(url).responses.retrieve(mine.id).output_text == mine.output_text


def test_store_false_keeps_nothing(dsn: str) -> None:
    with gateway(dsn) as url:
        r = client(url).responses.create(model="sim-echo", input="forget me", store=False)
        assert r.store is False
        kept = client(url).responses.create(model="sim-echo", input="keep me")
        with pytest.raises(openai.BadRequestError):  # tollway runs no background responses
            client(url).responses.cancel(kept.id)
        with pytest.raises(openai.NotFoundError):
            client(url, "sk-bob").responses.cancel(kept.id)
        with pytest.raises(openai.NotFoundError):
            client(url).responses.retrieve(r.id)


def test_input_items_pages(dsn: str) -> None:
    with gateway(dsn) as url:
        c = client(url)
        r = c.responses.create(model="sim-echo", input=[
            {"role": "user", "content": f"m{i}"} for i in range(5)])  # fmt: skip
        first = c.responses.input_items.list(r.id, limit=2, order="asc")
        assert [i.content[0].text if not isinstance(i.content, str) else i.content
                for i in first.data] == ["m0", "m1"] and first.has_more
        rest = c.responses.input_items.list(r.id, limit=10, order="asc", after=first.last_id)
        assert len(rest.data) == 3 and not rest.has_more
        newest = c.responses.input_items.list(r.id)
        assert len(newest.data) == 5 and newest.data[0].id == rest.data[-1].id
        bad = httpx.get(f"{url}/v1/responses/{r.id}/input_items?limit=0",
                        headers={"Authorization": "Bearer sk-alice"})  # fmt: skip
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
