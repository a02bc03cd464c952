"""Shared pieces of the /v1/messages tests: recordings, a replaying upstream, SSE parsing."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.providers.recordings import anthropic_whole
from tests.support.schemas import CONFORMANCE
from tests.support.servers import Upstream, send_sse

ANTHROPIC_STREAMS = CONFORMANCE / "streams/anthropic"
OPENAI_STREAMS = CONFORMANCE / "streams/openai"
REQUESTS = CONFORMANCE / "anthropic-requests"

STREAMS = sorted(p.name for p in ANTHROPIC_STREAMS.glob("*.sse") if "error" not in p.name)


def sse_events(raw: bytes) -> list[tuple[str, str]]:
    """(event name, data) of each SSE event, line ends normalized."""
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = "", []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" ").decode())
        if data:
            out.append((name, "\n".join(data)))
    return out


def recording(name: str) -> bytes:
    return (ANTHROPIC_STREAMS / name).read_bytes()


async def replay(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    """Anthropic's API played from the recordings: the deployment model names the file
    (``<name>.sse``); ``count_tokens`` answers from ``<model>.response.json``."""
    body = upstream.requests[-1]
    model = str(body.get("model"))
    if request.path.endswith("/count_tokens"):
        return web.json_response(json.loads((REQUESTS / f"{model}.response.json").read_text()))
    if model == "start-then-overloaded":  # message_start, a ping, then overloaded
        start = recording("docs-basic.sse").replace(b"\r\n", b"\n").split(b"\n\n")[0]
        raw = (start + b'\n\nevent: ping\ndata: {"type": "ping"}\n\n'
               + recording("docs-error-overloaded.sse"))
    else:
        raw = recording(model + ".sse")
    if body.get("stream"):
        return await send_sse(request, raw.replace(b"\r\n", b"\n"), upstream)
    events = [json.loads(data) for _name, data in sse_events(raw)]
    return web.json_response(anthropic_whole(events))


def anthropic_config(base_url: str, **extra: Any) -> dict[str, Any]:
    """A tollway whose model ``<recording>`` replays that recording from ``base_url``."""
    models = {
        p.stem: {"deployments": [{"provider": "anth", "model": p.stem}]}
        for p in ANTHROPIC_STREAMS.glob("*.sse")
    }
    models["with-fallback"] = {"deployments": [
        {"provider": "anth", "model": "start-then-overloaded"},
        {"provider": "anth", "model": "docs-basic"}]}
    models["counted"] = {"deployments": [{"provider": "anth",
                                          "model": "pydantic-ai-count_tokens-minimal"}]}
    config: dict[str, Any] = {
        "providers": {"anth": {"type": "anthropic", "base_url": base_url, "api_key": "sk-ant-k"}},
        "models": models,
    }
    config.update(extra)
    return config
