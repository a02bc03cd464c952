"""The minimal Redis client against a real Redis: replies in order under pipelining,
every reply type, error replies, a lost connection failing what is in flight and the
next command reconnecting, AUTH refused and SELECT honoured from the URL."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis as redis_py
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.limits.conftest import redis_url
from tollway.limits.resp import RedisError, RespClient, _encode, _parse

pytestmark = pytest.mark.redis


def test_replies_in_order_and_types() -> None:
    url = redis_url()

    async def go() -> None:
        client = RespClient(url)
        key = "test:resp:" + secrets.token_hex(4)
        try:
            results = await asyncio.gather(*(client.execute("INCR", key) for _ in range(200)))
            assert results == list(range(1, 201))  # 200 commands, one write, answers in order
            assert await client.execute("SET", key + ":s", "héllo") == b"OK"
            assert await client.execute("GET", key + ":s") == "héllo".encode()
            assert await client.execute("GET", key + ":missing") is None
            assert await client.execute("EVAL", "return {1, 'a', {2}}", 0) == [1, b"a", [2]]
            with pytest.raises(RedisError, match="ERR"):
                await client.execute("NOSUCHCOMMAND")
            assert await client.execute("DEL", key, key + ":s") == 2  # still in step
        finally:
            await client.close()

    asyncio.run(go())


def test_lost_connection_then_reconnect() -> None:
    url = redis_url()

    async def go() -> None:
        client = RespClient(url, timeout=2)
        name = "tollway-test-" + secrets.token_hex(4)
        try:
            await client.execute("CLIENT", "SETNAME", name)
            killer = redis_py.Redis.from_url(url)
            for c in killer.client_list():
                if c.get("name") == name:
                    killer.client_kill_filter(_id=c["id"])
            with pytest.raises(RedisError):
                await client.execute("PING")
            assert await client.execute("PING") == b"PONG"  # reconnected
        finally:
            await client.close()

    asyncio.run(go())


def test_select_and_refused_auth() -> None:
    url = redis_url()
    base = url.rsplit("/", 1)[0]

    async def go() -> None:
        key = "test:resp:db:" + secrets.token_hex(4)
        client = RespClient(base + "/3")
        try:
            await client.execute("SET", key, "x")
        finally:
            await client.close()
        assert redis_py.Redis.from_url(base + "/3").getdel(key) == b"x"
        assert redis_py.Redis.from_url(base + "/0").get(key) is None
        wrong = RespClient(base.replace("redis://", "redis://:wrong@") + "/0")
        with pytest.raises(RedisError):
            await wrong.execute("PING")
        await wrong.close()

    asyncio.run(go())


def test_nothing_listening() -> None:
    async def go() -> None:
        client = RespClient("redis://127.0.0.1:1/0", timeout=0.5)
        with pytest.raises(RedisError):
            await client.execute("PING")

    asyncio.run(go())


_VALUES = st.recursive(
    st.integers(-(2**62), 2**62) | st.binary(max_size=40) | st.none(),
    lambda inner: st.lists(inner, max_size=5), max_leaves=20,
)


def _wire(value: object) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    assert isinstance(value, list)
    return b"*%d\r\n" % len(value) + b"".join(_wire(v) for v in value)


@settings(max_examples=300)
@given(_VALUES, st.integers(1, 50))
def test_parser_round_trip_in_any_pieces(value: object, cut: int) -> None:
    wire = _wire(value)
    for end in range(0, len(wire), cut):  # every prefix is "incomplete", never a wrong value
        assert _parse(bytearray(wire[:end]), 0) is None
    assert _parse(bytearray(wire), 0) == (value, len(wire))


def test_encode() -> None:
    wire = b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$1\r\n\x00\r\n"
    assert _encode(("SET", "k", 5, b"\x00")) == wire
