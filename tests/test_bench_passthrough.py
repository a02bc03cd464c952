"""The benchmark's baseline passthrough re-serialises what the bench upstream sends.

The upstream and the passthrough run as real processes on 127.0.0.1
(``bench/upstream.py``, ``bench/passthrough.py``); answers through the passthrough
must carry the same JSON objects as the upstream's own, event by event.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from bench import procs
from bench.passthrough import reserialise_events


def test_reserialise_events_parses_each_event_and_keeps_the_rest() -> None:
    buf = (b'data:  {"a": 1,  "b": [1, 2]}\n\n'
           b": keep-alive comment\n\n"
           b'event: x\ndata: {"c":\ndata: 2}\n\n'  # multi-line data is joined
           b"data: [DONE]\n\n"
           b'data: {"partial": ')
    out, rest = reserialise_events(buf)
    assert out == (b'data: {"a":1,"b":[1,2]}\n\n'
                   b'data: {"c":2}\n\n'
                   b"data: [DONE]\n\n")
    assert rest == b'data: {"partial": '


def test_reserialise_events_rejects_broken_json() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        reserialise_events(b"data: {not json}\n\n")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    logs: Path = tmp_path_factory.mktemp("passthrough")
    up_port, pt_port = procs.free_port(), procs.free_port()
    upstream = procs.start_upstream(up_port, logs)
    try:
        passthrough = procs.start_passthrough(pt_port, up_port, logs)
        try:
            yield up_port, pt_port
        finally:
            passthrough.stop()
    finally:
        upstream.stop()


def _events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    return [e.removeprefix(b"data: ") for e in raw[:-2].split(b"\n\n")]


@pytest.mark.parametrize("delay", ["", "-d5"])
def test_stream_through_passthrough_equals_upstream(servers: tuple[int, int],
                                                    delay: str) -> None:
    up_port, pt_port = servers
    body = {"model": f"bench-upstream{delay}", "max_tokens": 7, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}
    direct = httpx.post(f"http://127.0.0.1:{up_port}/v1/chat/completions", json=body)
    relayed = httpx.post(f"http://127.0.0.1:{pt_port}/v1/chat/completions", json=body,
                         headers={"authorization": "Bearer x"})
    assert relayed.status_code == 200
    assert relayed.headers["content-type"] == "text/event-stream"
    ours, theirs = _events(relayed.content), _events(direct.content)
    assert ours[-1] == b"[DONE]" and theirs[-1] == b"[DONE]"
    assert [orjson.loads(e) for e in ours[:-1]] == [orjson.loads(e) for e in theirs[:-1]]
    # re-serialised by orjson: compact, whatever the upstream's spacing
    assert all(orjson.dumps(orjson.loads(e)) == e for e in ours[:-1])
    contents = [c["choices"][0]["delta"].get("content") for c in map(orjson.loads, ours[:-1])
                if c["choices"]]
    assert sum(1 for c in contents if c) == 7


def test_whole_answer_through_passthrough_equals_upstream(servers: tuple[int, int]) -> None:
    up_port, pt_port = servers
    body = {"model": "bench-upstream", "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}]}
    direct = httpx.post(f"http://127.0.0.1:{up_port}/v1/chat/completions", json=body)
    relayed = httpx.post(f"http://127.0.0.1:{pt_port}/v1/chat/completions", json=body)
    assert relayed.status_code == 200
    assert relayed.json() == direct.json()
    assert relayed.json()["choices"][0]["message"]["content"] == "tok tok tok "


def test_invalid_json_is_a_400(servers: tuple[int, int]) -> None:
    _, pt_port = servers
    resp = httpx.post(f"http://127.0.0.1:{pt_port}/v1/chat/completions", content=b"{nope")
    assert resp.status_code == 400
