"""``POST /v1/chat/completions``: parse → auth → admit → pipeline → encode → settle."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import orjson

from tollway.api.batching import ReadyBatches
from tollway.api.http import ClientGone, Receive, Scope, Send, read_body, send_error, send_json
from tollway.api.sse import encode_error_event, sse_stream
from tollway.chunks import StreamError
from tollway.context import RequestContext
from tollway.errors import GatewayError, InvalidRequest, ModelNotFound
from tollway.gateway import Gateway
from tollway.pipeline.collect import collect
from tollway.pipeline.compose import compose
from tollway.providers.base import EXTENSION_FIELDS, ChatRequest
from tollway.wire.openai import validate_chat_request

__all__ = ["handle_chat", "request_id_of"]

log = logging.getLogger("tollway")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def request_id_of(scope: Scope) -> str:
    """The client's ``X-Request-Id`` if it sent a sane one, else a new id."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and value.isascii():
                return str(value.decode())
            break
    return "req_" + os.urandom(16).hex()


def header_value(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def build_request(body: dict[str, Any], stream: bool, include_usage: bool) -> ChatRequest:
    """The pipeline's request: the client's body minus tollway's extension fields."""
    extensions = {k: body.pop(k) for k in EXTENSION_FIELDS if k in body}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return ChatRequest(
        body=body,
        model=body["model"],
        stream=stream,
        include_usage=include_usage,
        messages=body["messages"],
        tools=body.get("tools"),
        max_output_tokens=limit,
        extensions=extensions,
    )


async def handle_chat(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    ctx = RequestContext(request_id=request_id_of(scope))
    id_header = [(b"x-request-id", ctx.request_id.encode())]
    try:
        await _serve(gw, ctx, scope, receive, send, id_header)
    except GatewayError as exc:
        ctx.status = exc.status
        ctx.error = exc.message
        ctx.error_code = exc.code
        await send_error(send, exc, id_header)
    except ClientGone:
        ctx.client_disconnected = True
        ctx.status = 499
    except Exception:
        log.exception("unhandled error in request %s", ctx.request_id)
        ctx.status = 500
        ctx.error = "internal error"
        await send_error(
            send, GatewayError("The server had an error processing your request."), id_header
        )
    finally:
        await gw.settle(ctx)


async def _serve(
    gw: Gateway,
    ctx: RequestContext,
    scope: Scope,
    receive: Receive,
    send: Send,
    id_header: list[tuple[bytes, bytes]],
) -> None:
    server = gw.settings.server
    raw = await read_body(receive, server.max_body_bytes, scope)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    parsed = validate_chat_request(body, raw)
    if gw.authenticate is not None:
        auth = await gw.authenticate(header_value(scope, b"authorization"))
        ctx.account_id = auth.account_id
        ctx.key_id = auth.key_id
        ctx.account = auth
    alias = parsed.model
    ctx.requested_model = alias
    if alias not in gw.settings.models:
        raise ModelNotFound(
            f"The model `{alias}` does not exist or you do not have access to it.", param="model"
        )
    stream = bool(parsed.stream)
    include_usage = bool(stream and parsed.stream_options and parsed.stream_options.include_usage)
    request = build_request(body, stream, include_usage)
    ctx.request = request
    for hook in gw.request_hooks:
        await hook(ctx)
    for admit in gw.admission:
        await admit(ctx)
    ctx.mark("admitted")

    response_id = "chatcmpl-" + ctx.request_id.removeprefix("req_")
    created = int(time.time())
    events = compose(gw.source(ctx), gw.stages(ctx), ctx)
    if not stream:
        try:
            result = await collect(
                events, response_id=response_id, created=created, fallback_model=alias
            )
        finally:
            await aclose(events)
        if ctx.request.extensions.get("include_route_trace"):
            result["route_trace"] = [_attempt_json(a) for a in ctx.attempts]
        for extra_key in ("firewall",):
            if ctx.request.extensions.get(extra_key) and ctx.firewall_verdicts is not None:
                result["firewall"] = {
                    "policy": ctx.request.extensions[extra_key],
                    "verdicts": ctx.firewall_verdicts,
                }
        await send_json(send, 200, result, id_header + _route_headers(ctx))
        ctx.mark("finished")
        return

    chunks = sse_stream(
        events,
        response_id=response_id,
        created=created,
        model=alias,
        include_usage=include_usage,
        usage_on_final_chunk=server.usage_on_final_chunk,
    )
    try:
        first = await chunks.__anext__()  # the commit point: errors before it raise here
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await aclose(chunks)
        raise
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": _SSE_HEADERS + id_header + _route_headers(ctx),
        }
    )
    await _pump(ctx, chunks, first, receive, send)


async def _pump(
    ctx: RequestContext, chunks: Any, first: bytes, receive: Receive, send: Send
) -> None:
    """Send SSE bytes until the end; a disconnect cancels the pipeline at once."""
    me = asyncio.current_task()
    assert me is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                me.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    batches = ReadyBatches(chunks)
    try:
        await send({"type": "http.response.body", "body": first, "more_body": True})
        while batch := await batches.next_batch():  # chunks ready together: one write
            body = batch[0] if len(batch) == 1 else b"".join(batch)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        watcher.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        ctx.mark("finished")
    except asyncio.CancelledError:
        if not gone:
            raise
        ctx.client_disconnected = True
        ctx.status = 499
        me.uncancel()
    except Exception:  # after the commit point: one error event, then the end
        log.exception("stream of %s failed", ctx.request_id)
        ctx.error = "internal error"
        await send(
            {
                "type": "http.response.body",
                "more_body": False,
                "body": encode_error_event(StreamError(500, "The server had an error.")),
            }
        )
    finally:
        watcher.cancel()
        await batches.aclose()


async def aclose(iterator: Any) -> None:
    """Close an async generator (and so every stage and the upstream behind it)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def _route_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if ctx.deployment is not None:
        out.append((b"x-tollway-served-by", ctx.deployment.id.encode()))
        failed = [a.deployment for a in ctx.attempts if a.outcome == "error"]
        if failed:
            alias = ctx.requested_model or ""
            out.append((b"x-tollway-fallback-from", f"{alias}/{failed[0]}".encode()))
    return out


def _attempt_json(attempt: Any) -> dict[str, Any]:
    return {
        "deployment": attempt.deployment,
        "outcome": attempt.outcome,
        "status": attempt.status,
        "error": attempt.error,
        "latency_ms": round(attempt.latency_ms, 3),
    }
