"""One conformance suite for every provider adapter, reusable by adapters in other packages.

A provider describes itself with a ``ProviderSuite``: the config block that points
its adapter at a local upstream, how the upstream tells which recording a request
asks for (and whether it streams), and its ``Recording``s (what the upstream sends
in each mode and what a client must end up with). ``check_recording`` then runs one
recording through a real tollway with a real local upstream, in both modes, and
checks that

- every streamed chunk and the whole response fit OpenAI's published schemas,
- the text, reasoning, tool calls, finish reason, served model and usage equal the
  recording's (usage is compared when the recording reports it),
- streaming and non-streaming give the same result, and the openai SDK agrees.

A separately packaged adapter runs the same checks with its own ``ProviderSuite``
(register the adapter with ``tollway.providers.registry.register_provider`` first).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from openai import OpenAI

from tests.providers.recordings import Expected
from tests.support.schemas import validate
from tests.support.servers import Upstream, run_tollway

__all__ = ["ProviderSuite", "Recording", "check_recording", "running"]

Route = Callable[[str, dict[str, Any]], tuple[str, bool]]  # (path, JSON body) → (model, stream)


@dataclass(frozen=True)
class Recording:
    """One recorded answer: the upstream's bytes in each mode and what they mean."""

    name: str  # also the deployment's model name
    stream_body: bytes
    whole_body: bytes
    expected: Expected
    stream_content_type: str = "text/event-stream"
    error: tuple[int, str | None] | None = None  # (status, code) the client must get instead
    status: int = 200  # the upstream's HTTP status (an error recording's)


@dataclass
class ProviderSuite:
    """What the suite needs to know about one provider adapter."""

    type: str
    config: Callable[[str], dict[str, Any]]  # upstream base URL → providers.<name> block
    recordings: list[Recording]
    route: Route | None = None  # None: the adapter needs no upstream (simulated)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)


def _handler(suite: ProviderSuite) -> Callable[[web.Request, Upstream], Any]:
    by_name = {r.name: r for r in suite.recordings}

    async def handle(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        body = upstream.requests[-1]
        assert suite.route is not None
        model, streaming = suite.route(request.path, body)
        suite.requests.append((request.path, body, dict(request.headers)))
        rec = by_name[model]
        if not streaming:
            return web.Response(body=rec.whole_body, status=rec.status,
                                content_type="application/json")
        if rec.status != 200:  # Google sends error bodies unframed, whatever the content type
            return web.Response(body=rec.stream_body, status=rec.status,
                                content_type=rec.stream_content_type)
        resp = web.StreamResponse(headers={"Content-Type": rec.stream_content_type})
        await resp.prepare(request)
        step = max(1, len(rec.stream_body) // 7)  # a few uneven writes
        for i in range(0, len(rec.stream_body), step):
            await resp.write(rec.stream_body[i : i + step])
        await resp.write_eof()
        return resp

    return handle


@contextmanager
def running(suite: ProviderSuite) -> Iterator[str]:
    """tollway (and, if the adapter needs one, the replaying upstream); yields its URL."""
    models = {r.name: {"deployments": [{"provider": "p", "model": r.name}]}
              for r in suite.recordings}
    if suite.route is None:
        with run_tollway({"providers": {"p": suite.config("")}, "models": models}) as url:
            yield url
        return
    with Upstream(_handler(suite)) as upstream:
        config = {"providers": {"p": suite.config(upstream.base_url)}, "models": models}
        with run_tollway(config) as url:
            yield url


@dataclass
class Result:
    model: str = ""
    text: str = ""
    reasoning: str = ""
    tools: list[tuple[str, Any]] = field(default_factory=list)
    finish: str | None = None
    usage: tuple[int, int, int, int] | None = None


def _usage(usage: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
    if not usage:
        return None
    return (usage["prompt_tokens"], usage["completion_tokens"],
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0))


def _stream(url: str, model: str) -> Result:
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=30, json={
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "replay"}],
    }) as r:
        assert r.status_code == 200, r.read()
        raw = r.read()
    events = raw.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    out = Result()
    calls: dict[int, list[str]] = {}
    for event in events[:-2]:
        assert event.startswith(b"data: ") and b"\n" not in event
        chunk = json.loads(event[6:])
        validate(chunk, "CreateChatCompletionStreamResponse")
        out.model = chunk["model"]
        out.usage = _usage(chunk.get("usage")) or out.usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            out.text += delta.get("content") or ""
            out.reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call["index"], ["", ""])
                slot[0] += (call.get("function") or {}).get("name") or ""
                slot[1] += (call.get("function") or {}).get("arguments") or ""
            out.finish = choice.get("finish_reason") or out.finish
    out.tools = [(n, json.loads(a)) for n, a in (calls[i] for i in sorted(calls))]
    return out


def _whole(url: str, model: str) -> Result:
    r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": model, "messages": [{"role": "user", "content": "replay"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "CreateChatCompletionResponse")
    message = body["choices"][0]["message"]
    return Result(
        model=body["model"], text=message.get("content") or "",
        reasoning=message.get("reasoning_content") or "",
        tools=[(c["function"]["name"], json.loads(c["function"]["arguments"]))
               for c in message.get("tool_calls") or []],
        finish=body["choices"][0]["finish_reason"], usage=_usage(body.get("usage")))


def _sdk_text(url: str, model: str) -> str:
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    return "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": "replay"}])
        if chunk.choices)


def _error(url: str, model: str, stream: bool) -> tuple[int, str | None]:
    r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": model, "stream": stream, "messages": [{"role": "user", "content": "replay"}]})
    validate(r.json(), "ErrorResponse")
    return r.status_code, r.json()["error"]["code"]


def check_recording(url: str, rec: Recording) -> None:
    """Both modes through tollway: schema-valid, equal to the recording and to each other."""
    if rec.error is not None:  # the recording is a failure: the same error in both modes
        assert _error(url, rec.name, True) == _error(url, rec.name, False) == rec.error
        return
    streamed, whole = _stream(url, rec.name), _whole(url, rec.name)
    exp = rec.expected
    for got in (streamed, whole):
        assert got.model == exp.model
        assert got.text == exp.text
        assert got.reasoning == exp.reasoning
        assert got.tools == exp.tools
        assert got.finish == exp.finish
        assert got.usage is not None  # reported, or counted when the upstream sent none
        if exp.usage is not None:
            assert got.usage == exp.usage
    assert streamed == whole
    assert _sdk_text(url, rec.name) == exp.text
