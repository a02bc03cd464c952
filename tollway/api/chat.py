"""``POST /v1/chat/completions``: auth → read, parse → admit → pipeline → encode → settle."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from tollway.api.batching import ReadyBatches, send_until_end
from tollway.api.encode import collect
from tollway.api.http import Receive, Scope, Send, read_body, send_error, send_json
from tollway.api.lifecycle import run_request
from tollway.api.sse import encode_error_event, sse_stream
from tollway.api.watch import ClientWatch
from tollway.chunks import StreamError
from tollway.context import RequestContext
from tollway.errors import GatewayError, InvalidRequest, ModelNotFound
from tollway.gateway import Gateway
from tollway.ids import ordered_hex
from tollway.pipeline.compose import compose
from tollway.providers.base import EXTENSION_FIELDS, ChatRequest
from tollway.providers.pacing import loop_behind
from tollway.wire.openai import validate_chat_request

__all__ = ["client_request_id", "handle_chat", "id_headers", "new_request_id"]

log = logging.getLogger("tollway")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def new_request_id() -> str:
    """Tollway's own request id: unique, it keys reservations, ledger entries and traces.

    Time-ordered (``tollway.ids``): 32 hex digits, 80 of their bits random.
    """
    return "req_" + ordered_hex(10)


def client_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-Id`` if it sent a sane one (1–128 printable ASCII)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and value.isascii():
                text: str = value.decode()
                if text.isprintable():
                    return text
            return None
    return None


def id_headers(request_id: str, client_id: str | None) -> list[tuple[bytes, bytes]]:
    """``X-Request-Id`` (the client's id if it sent one, else tollway's) and
    ``X-Tollway-Request-Id`` (always tollway's)."""
    own = request_id.encode()
    return [
        (b"x-request-id", client_id.encode() if client_id is not None else own),
        (b"x-tollway-request-id", own),
    ]


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
    """Serve one chat completion; whatever happens (an error, the client leaving at any
    point, the upstream dying) the request is settled and traced with its outcome."""
    ctx = RequestContext(request_id=new_request_id(), client_request_id=client_request_id(scope))
    headers = id_headers(ctx.request_id, ctx.client_request_id)
    watch = ClientWatch()

    async def serve() -> None:
        await _serve(gw, ctx, scope, receive, send, headers, watch)

    async def answer_error(exc: GatewayError, with_headers: list[tuple[bytes, bytes]]) -> None:
        await send_error(send, exc, with_headers)

    await run_request(ctx, serve, answer_error, headers, watch, gw.settle)


def _parse_body(raw: bytes) -> tuple[dict[str, Any], str, bool, bool]:
    """The request body, validated: (the JSON object, model, stream, include_usage).

    The bytes and the validated model are not kept: this frame would hold them, two more
    copies of the request, for as long as the response streams."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    parsed = validate_chat_request(body, raw)
    stream = bool(parsed.stream)
    include_usage = bool(stream and parsed.stream_options and parsed.stream_options.include_usage)
    return body, parsed.model, stream, include_usage


async def _serve(
    gw: Gateway,
    ctx: RequestContext,
    scope: Scope,
    receive: Receive,
    send: Send,
    id_header: list[tuple[bytes, bytes]],
    watch: ClientWatch,
) -> None:
    server = gw.settings.server
    if gw.has_auth:  # first: an unknown caller costs no body read or validation
        caller = await gw.authenticate(header_value(scope, b"authorization"))
        assert caller is not None
        ctx.account_id = caller.account_id
        ctx.key_id = caller.key_id
        ctx.account = caller
    body, alias, stream, include_usage = _parse_body(
        await read_body(receive, server.max_body_bytes, scope)
    )
    ctx.requested_model = alias
    if alias not in gw.settings.models:
        raise ModelNotFound(
            f"The model `{alias}` does not exist or you do not have access to it.", param="model"
        )
    request = build_request(body, stream, include_usage)
    ctx.request = request
    await gw.prepare(ctx)
    watch.start(receive)  # from admission on (what came before cannot be cut short)
    watch.defer()
    # While the loop is behind, a commit takes iterations of tens of ms: admission then
    # decides the reservation at once and the upstream call starts meanwhile (nothing
    # goes to the client before ``ctx.committed()``). Otherwise the commit comes within
    # milliseconds, and the reservation's statements are cheaper run in its group's batch.
    early = server.early_admission
    ctx.early_admission = early == "always" or (early == "under_load" and loop_behind())
    await gw.admit(ctx)
    watch.resume()
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
        await ctx.committed()  # the reservation is durable before anything is served
        if ctx.request.extensions.get("include_route_trace"):
            result["route_trace"] = [_attempt_json(a) for a in ctx.attempts]
        result.update(gw.response_fields(ctx))
        watch.stop()
        await send_json(send, 200, result, id_header + _route_headers(ctx) + ctx.response_headers)
        ctx.delivered = "all"
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
        try:
            first = await chunks.__anext__()  # the commit point: errors before it raise here
        except StopAsyncIteration:
            first = b""
        await ctx.committed()  # the reservation is durable before the first byte
    except BaseException:
        await aclose(chunks)
        raise
    await _pump(ctx, chunks, first, send, watch,
                _SSE_HEADERS + id_header + _route_headers(ctx) + ctx.response_headers)


async def _pump(
    ctx: RequestContext,
    chunks: Any,
    first: bytes,
    send: Send,
    watch: ClientWatch,
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Send SSE bytes until the end (a disconnect cancels this task at once)."""
    batches = ReadyBatches(chunks)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        ctx.delivered = "partial"
        # chunks ready together go in one write; the last ones with the response's end
        await send_until_end(batches, send, watch.stop)
        if ctx.error is None:  # else the stream ended with an error event
            ctx.delivered = "all"
        ctx.mark("finished")
    except Exception:  # after the commit point: one error event, then the end
        log.exception("stream of %s failed", ctx.request_id)
        ctx.fail(500, "internal error")
        watch.stop()
        await send(
            {
                "type": "http.response.body",
                "more_body": False,
                "body": encode_error_event(StreamError(500, "The server had an error.")),
            }
        )
    finally:
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
