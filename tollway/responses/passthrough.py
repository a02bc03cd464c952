"""Pass-through of a Responses request to a deployment whose upstream speaks it.

The client's body goes upstream unchanged but for ``model`` (the deployment's);
streamed events are relayed byte for byte, unknown event types and
``sequence_number`` included, with one exception: the final ``response.completed``
(``response.incomplete``, ``response.failed``) is re-encoded with tollway's cost
figures added to its ``usage`` (the ledger entry's). The call is metered from that
usage (``input_tokens``, ``output_tokens``, cached and reasoning details); a stream
that ends without one is billed from tollway's count of the prompt and of the
``output_text`` / ``function_call_arguments`` deltas relayed (``estimated``).
Retryable failures before the first byte move on to the next deployment that speaks
the Responses API, as for chat.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from tollway.api.encode import dumps
from tollway.chunks import Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.context import Attempt, RequestContext
from tollway.errors import UpstreamError
from tollway.providers.openai_compat import error_from_body
from tollway.providers.pacing import read_chunks
from tollway.providers.transport import json_body

__all__ = ["KEPT", "UPSTREAM", "cancel_upstream", "open_upstream", "relay", "upstream_of",
           "usage_from_responses"]

UPSTREAM = {"type": "tollway.upstream_state"}  # stored context marker: the upstream has the state
KEPT = ("completed", "incomplete", "queued", "in_progress")  # stored (background ones too)

_FINAL = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')
_DELTAS = (b'"response.output_text.delta"', b'"response.function_call_arguments.delta"')


def usage_from_responses(usage: Any) -> Usage | None:
    """A Responses API usage object as tollway's ``Usage``."""
    if not isinstance(usage, dict):
        return None

    def count(value: Any) -> int:
        return value if type(value) is int and value >= 0 else 0

    inp = usage.get("input_tokens_details") or {}
    out = usage.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=count(usage.get("input_tokens")),
        completion_tokens=count(usage.get("output_tokens")),
        cached_tokens=count(inp.get("cached_tokens")) if isinstance(inp, dict) else 0,
        reasoning_tokens=count(out.get("reasoning_tokens")) if isinstance(out, dict) else 0,
    )


def upstream_of(context: list[dict[str, Any]]) -> str | None:
    """The provider holding a passed-through response's state (None: tollway's own)."""
    for item in context[:1]:
        if item.get("type") == UPSTREAM["type"]:
            return str(item.get("provider"))
    return None


async def cancel_upstream(session: aiohttp.ClientSession, provider: ProviderConfig, name: str,
                          response_id: str) -> Any:  # fmt: skip
    """``POST {base_url}/responses/{id}/cancel`` at the upstream; its answer."""
    headers = {"Content-Type": "application/json", **provider.headers}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key}"
    url = f"{(provider.base_url or '').rstrip('/')}/responses/{response_id}/cancel"
    async with session.post(url, headers=headers) as resp:
        raw = await resp.read()
        if resp.status >= 400:
            raise error_from_body(resp.status, raw, resp.headers, name)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"provider {name!r} answered with invalid JSON") from None


async def open_upstream(
    session: aiohttp.ClientSession,
    providers: dict[str, ProviderConfig],
    candidates: list[DeploymentConfig],
    body: dict[str, Any],
    ctx: RequestContext,
    router: Any,
    redact: Callable[[UpstreamError], UpstreamError],
) -> tuple[DeploymentConfig, aiohttp.ClientResponse]:
    """The first deployment's open answer (status 200), trying the next on retryable errors."""
    last: UpstreamError | None = None
    for dep in candidates:
        provider = providers[dep.provider]
        url = (provider.base_url or "").rstrip("/") + "/responses"
        headers = {"Content-Type": "application/json", **provider.headers}
        if provider.api_key:
            headers["Authorization"] = f"Bearer {provider.api_key}"
        started = time.perf_counter()
        router.started(dep)
        try:
            timeout = aiohttp.ClientTimeout(total=dep.timeouts.total,
                                            sock_connect=dep.timeouts.connect)  # fmt: skip
            resp = await session.post(url, data=json_body({**body, "model": dep.model}),
                                      headers=headers, timeout=timeout)  # fmt: skip
            if resp.status >= 400:
                raw = await resp.read()
                resp.release()
                raise error_from_body(resp.status, raw, resp.headers, dep.provider)
        except (UpstreamError, TimeoutError, OSError, aiohttp.ClientError) as exc:
            router.finished(dep, False, None)
            error = redact(exc if isinstance(exc, UpstreamError) else UpstreamError(
                f"provider {dep.provider!r} could not be reached: {type(exc).__name__}"))
            ctx.attempts.append(Attempt(dep.id, "error", error.status, error.message,
                                        (time.perf_counter() - started) * 1000,
                                        error.misconfigured))  # fmt: skip
            if not error.retryable:
                raise error from None
            last = error
            continue
        router.finished(dep, True, time.perf_counter() - started)
        ctx.attempts.append(Attempt(dep.id, "ok", 200, None,
                                    (time.perf_counter() - started) * 1000))  # fmt: skip
        return dep, resp
    assert last is not None
    raise last


async def relay(
    resp: aiohttp.ClientResponse,
    on_final: Callable[[dict[str, Any]], dict[str, Any]],
    on_delta: Callable[[str], None],
) -> AsyncIterator[bytes]:
    """The upstream's SSE events, unchanged but for the final one (``on_final``)."""
    buf = b""
    async for data in read_chunks(resp):
        buf += data
        while True:
            cut = buf.find(b"\n\n")
            if cut < 0:
                break
            event, buf = buf[: cut + 2], buf[cut + 2 :]
            yield _inspect(event, on_final, on_delta)
    if buf.strip():
        yield _inspect(buf, on_final, on_delta)


def _inspect(
    event: bytes,
    on_final: Callable[[dict[str, Any]], dict[str, Any]],
    on_delta: Callable[[str], None],
) -> bytes:
    if any(t in event for t in _DELTAS):
        obj = _data(event)
        if obj is not None and isinstance(obj.get("delta"), str):
            on_delta(obj["delta"])
        return event
    if not any(t in event for t in _FINAL):
        return event
    obj = _data(event)
    if obj is None or not isinstance(obj.get("response"), dict):
        return event
    obj = on_final(obj)
    head = b"".join(line + b"\n" for line in event.split(b"\n")
                    if line.startswith((b"event:", b"id:")))  # fmt: skip
    return head + b"data: " + dumps(obj) + b"\n\n"


def _data(event: bytes) -> dict[str, Any] | None:
    payload = b"".join(line[5:].lstrip() for line in event.split(b"\n")
                       if line.startswith(b"data:"))  # fmt: skip
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
