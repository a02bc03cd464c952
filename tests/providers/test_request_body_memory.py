"""What an upstream request's body costs while it waits for its answer.

aiohttp keeps a request's body until the answer's headers arrive (for a whole answer,
after the upstream has generated all of it), and orjson's bytes keep the buffer they were
written in (4 KiB for a short body, 10 to 16 times the length of a longer one), so every
request in flight held that buffer. A real aiohttp upstream on 127.0.0.1 (its own thread
and loop) reads each body and holds its answer until the test lets it go; tracemalloc
counts what the process holds meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tollway.chunks import Start
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.providers.base import ChatRequest
from tollway.providers.openai_compat import OpenAIProvider
from tollway.providers.transport import exact_bytes, json_body

REQUESTS = 12


class HeldUpstream:
    """Answers each streamed chat request's first chunk at once, the rest on ``release``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.started = 0
        self.bodies: list[int] = []
        self._go: asyncio.Event | None = None

    def __enter__(self) -> HeldUpstream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def release(self) -> None:
        """Let every answer held so far finish; later ones are held again."""
        go = self._go
        if go is not None:
            self.loop.call_soon_threadsafe(go.set)
        self._go = asyncio.Event()

    async def _start(self) -> None:
        self._go = asyncio.Event()

        async def chat(request: web.Request) -> web.StreamResponse:
            go = self._go  # this round's (taken before the client can see an answer)
            assert go is not None
            self.bodies.append(len(await request.read()))
            self.started += 1
            await go.wait()  # generating, as a real provider does before its first byte
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            first = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"},
                                  "finish_reason": None}]}  # fmt: skip
            last = {**first, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            await resp.write(b"data: " + orjson.dumps(first) + b"\n\n"
                             b"data: " + orjson.dumps(last) + b"\n\ndata: [DONE]\n\n")
            await resp.write_eof()
            return resp

        app = web.Application(client_max_size=4 * 2**20)
        app.router.add_post("/v1/chat/completions", chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"


def _conversation(turns: int, document: int = 0) -> list[dict[str, Any]]:
    """A chat history of about ``turns`` × 1.3 KB, as clients resend it every turn, and a
    question about a pasted document of ``document`` characters."""
    out: list[dict[str, Any]] = [{"role": "system", "content": "You help with billing. " * 20}]
    for i in range(turns):
        out.append({"role": "user", "content": f"Question {i}: how is this billed? " * 20})
        out.append({"role": "assistant", "content": f"Answer {i}: by the ledger. " * 20})
    if document:
        text = ("An invoice line. " * (document // 17 + 1))[:document]
        out.append({"role": "user", "content": f"Summarise this document:\n{text}"})
    return out


def _request(messages: list[dict[str, Any]]) -> ChatRequest:
    body = {"model": "m", "messages": messages, "stream": True}
    return ChatRequest(body=body, model="m", stream=True, include_usage=False,
                       messages=messages)  # fmt: skip


async def _held_per_request(upstream: HeldUpstream, request: ChatRequest,
                            requests: int = REQUESTS) -> float:
    """Bytes tracemalloc sees held per request while ``requests`` wait for their answers'
    first byte (each on a new connection of a new session)."""
    dep = DeploymentConfig(provider="up", model="m")

    async def call(provider: OpenAIProvider) -> list[Any]:
        return [event async for event in provider.stream(request, dep)]

    async with aiohttp.ClientSession() as session:
        provider = OpenAIProvider("up", ProviderConfig(type="openai", base_url=upstream.url,
                                                       api_key="k"), session)  # fmt: skip
        target = upstream.started + requests
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            calls = [asyncio.create_task(call(provider)) for _ in range(requests)]
            while upstream.started < target:  # every body is at the upstream
                await asyncio.sleep(0.005)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        upstream.release()
        for events in await asyncio.gather(*calls):
            assert type(events[0]) is Start
    return held / requests


def test_a_request_waiting_for_its_answer_holds_its_body_at_its_own_size() -> None:
    # a pasted document: one long string, for which orjson's buffer is 10 times its
    # length (a body of many short strings gets at most twice its length, and 4 KiB)
    short, long = _request(_conversation(0)), _request(_conversation(2, 30_000))
    sizes = [len(orjson.dumps(r.body)) for r in (short, long)]

    async def rounds() -> list[float]:
        await _held_per_request(upstream, short, 2)  # lazily made things made first
        return [await _held_per_request(upstream, r) for r in (short, long)]

    with HeldUpstream() as upstream:
        held = asyncio.run(rounds())
    assert upstream.started == 2 + 2 * REQUESTS
    assert max(upstream.bodies) >= sizes[1]  # the upstream got the whole conversation
    # what the document adds is its length twice: the client's body and the copy the
    # upstream (in this process) has read; with orjson's buffer it was 9.5 times
    assert held[1] - held[0] < 3 * (sizes[1] - sizes[0]), (held, sizes)


@pytest.mark.parametrize("length", [0, 10, 3000, 70_000])
def test_json_body_is_exact(length: int) -> None:
    value = {"content": "a" * length}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        body = json_body(value)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert body == orjson.dumps(value)
    assert held < len(body) + 256
    assert exact_bytes(body) == body
