"""An upstream that dies mid-stream: what the firewall held is scanned and released first.

The upstream replays a real OpenAI chunk stream (its envelope: id, model, fingerprint)
with our own text, then breaks the connection without a finish.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web
from openai import OpenAI

from tests.conftest import sim_config
from tests.support.schemas import CONFORMANCE
from tests.support.servers import Upstream, run_tollway

RECORDING = CONFORMANCE / "streams" / "openai" / "openai-python-text-basic.sse"
PIECES = {
    "email": ["Write to ", "bob@example.c", "om"],
    "card": ["Card: 4111 1111 ", "1111 1111"],
}


def _chunks(pieces: list[str]) -> list[bytes]:
    """The recording's first chunk (role) and its envelope around our pieces."""
    first = RECORDING.read_bytes().split(b"\n\n")[0]
    envelope = json.loads(first.removeprefix(b"data: "))
    out = [first + b"\n\n"]
    for piece in pieces:
        envelope["choices"] = [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                "finish_reason": None}]
        out.append(b"data: " + json.dumps(envelope).encode() + b"\n\n")
    return out


async def _dies(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for chunk in _chunks(PIECES[upstream.requests[-1]["model"]]):
        await resp.write(chunk)
        await asyncio.sleep(0.01)
    assert request.transport is not None
    request.transport.abort()  # no finish, no [DONE]: the connection breaks
    return resp


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with Upstream(_dies) as upstream:
        config = sim_config()
        config["providers"] = {**config["providers"],
                               "up": {"type": "openai", "base_url": upstream.base_url}}
        config["models"] = {name: {"deployments": [{"provider": "up", "model": name}]}
                            for name in PIECES}
        config["admin_key"] = "admin-secret"
        with run_tollway(config) as url:
            yield url


def _stream(url: str, model: str, firewall: str) -> tuple[str, list[Any], Exception | None, str]:
    """Text, chunks, the error raised (if any) and the request id of one streamed request."""
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_body={"firewall": firewall},
    )
    chunks: list[Any] = []
    error: Exception | None = None
    try:
        for chunk in raw.parse():
            chunks.append(chunk)
    except openai.APIError as exc:
        error = exc
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, error, raw.headers["x-request-id"]


def _trace(url: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(f"{url}/admin/traces/{request_id}",
                      headers={"Authorization": "Bearer admin-secret"})
        if r.status_code == 200 or time.monotonic() > deadline:
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_held_text_is_released_redacted_before_the_error(gateway: str) -> None:
    text, _, error, _ = _stream(gateway, "email", "redact-pii")
    assert text == "Write to [REDACTED:email]"  # was "Write to ": the held text was lost
    assert isinstance(error, openai.APIError)


def test_monitor_releases_everything_before_the_error(gateway: str) -> None:
    text, _, error, _ = _stream(gateway, "email", "monitor")
    assert text == "Write to bob@example.com"
    assert isinstance(error, openai.APIError)


def test_a_block_completed_by_the_held_text_wins_over_the_error(gateway: str) -> None:
    text, chunks, error, request_id = _stream(gateway, "card", "strict-block")
    assert error is None  # a blocked response: no error event after content_filter
    assert text == "Card: "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    trace = _trace(gateway, request_id)
    assert trace["finish_reason"] == "content_filter"
    assert trace["partial"] is True
    assert trace["status"] == 200 and trace["error"] is None  # the client was not told of it
    assert "connection broke" in trace["attempts"][-1]["error"]  # the attempt keeps it
    assert any(v["detector"] == "credit_card" and v["action"] == "block"
               for v in trace["firewall_verdicts"])


