"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's API on tollway's pipeline.

auth (``x-api-key`` or ``Authorization: Bearer``) → read, parse, validate → the
chat translation plus the client's own body (``ChatRequest.anthropic``) → request
hooks (firewall, platform tools) → admission (reservation) → route → stages →
``encode.message_sse`` or ``encode.collect_message`` → settle. The same path as
``/v1/chat/completions``; only the edges speak Anthropic, errors included.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from tollway import tokens
from tollway.api.batching import ReadyBatches, send_until_end
from tollway.api.chat import (
    _route_headers,
    aclose,
    client_request_id,
    header_value,
    id_headers,
    new_request_id,
)
from tollway.api.http import ClientGone, Receive, Scope, Send, header_list, read_body, send_json
from tollway.api.lifecycle import run_request
from tollway.api.messages.encode import collect_message, message_sse
from tollway.api.messages.errors import anthropic_error, error_event
from tollway.api.messages.validate import validate_messages
from tollway.api.watch import ClientWatch
from tollway.chunks import StreamError
from tollway.context import RequestContext
from tollway.errors import GatewayError, InvalidRequest, ModelNotFound
from tollway.pipeline.compose import compose
from tollway.plugins.contract import Pipeline
from tollway.providers.base import EXTENSION_FIELDS, AnthropicNative, ChatRequest
from tollway.wire.anthropic_in import to_chat

__all__ = ["handle_count_tokens", "handle_messages"]

log = logging.getLogger("tollway")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_FORWARDED = (b"anthropic-version", b"anthropic-beta")


async def send_anthropic_error(
    send: Send, error: GatewayError, headers: list[tuple[bytes, bytes]]
) -> None:
    status, body = anthropic_error(error)
    await send_json(send, status, body, [*headers, *header_list(error.headers)])


def _authorization(scope: Scope) -> str | None:
    """``x-api-key`` (Anthropic's SDKs, Claude Code) or ``Authorization: Bearer``."""
    key = header_value(scope, b"x-api-key")
    if key:
        return "Bearer " + key.strip()
    return header_value(scope, b"authorization")


async def _authenticate(gw: Pipeline, ctx: RequestContext, scope: Scope) -> None:
    caller = await gw.authenticate(_authorization(scope))  # first: costs no body read
    if caller is not None:  # None: no authenticator, every caller is anonymous
        ctx.account_id, ctx.key_id, ctx.account = caller.account_id, caller.key_id, caller


async def _read(gw: Pipeline, scope: Scope, receive: Receive, count: bool) -> dict[str, Any]:
    raw = await read_body(receive, gw.settings.server.max_body_bytes, scope)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body must be valid JSON.") from None
    validate_messages(body, raw, count_tokens=count)
    if body["model"] not in gw.settings.models:
        raise ModelNotFound(f"model: {body['model']}", param="model")
    return body  # type: ignore[no-any-return]


def _anthropic_only(gw: Pipeline, alias: str) -> bool:
    """Every deployment of ``alias`` is an Anthropic one (the client's body goes as is)."""
    providers = gw.settings.providers
    return all(
        d.provider in providers and providers[d.provider].type == "anthropic"
        for d in gw.settings.models[alias].deployments
    )


def build_request(
    gw: Pipeline, body: dict[str, Any], scope: Scope
) -> tuple[ChatRequest, list[str]]:
    """The pipeline's request and what its chat translation cannot express."""
    extensions = {k: body.pop(k) for k in EXTENSION_FIELDS if k in body}
    alias = body["model"]
    chat = to_chat(body, alias)
    headers = {
        name.decode(): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _FORWARDED
    }
    request = ChatRequest(
        body=chat.body,
        model=alias,
        stream=bool(body.get("stream")),
        include_usage=False,
        messages=chat.messages,
        tools=chat.tools,
        max_output_tokens=body["max_tokens"],
        extensions=extensions,
        anthropic=AnthropicNative(body, headers, len(chat.messages), len(chat.tools or ())),
    )
    return request, chat.problems


async def handle_messages(gw: Pipeline, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one Messages request; settled and traced whatever happens (as chat is)."""
    ctx = RequestContext(request_id=new_request_id(), client_request_id=client_request_id(scope))
    headers = [*id_headers(ctx.request_id, ctx.client_request_id),
               (b"request-id", ctx.request_id.encode())]
    watch = ClientWatch()

    async def serve() -> None:
        await _serve(gw, ctx, scope, receive, send, headers, watch)

    async def answer_error(exc: GatewayError, with_headers: list[tuple[bytes, bytes]]) -> None:
        await send_anthropic_error(send, exc, with_headers)

    await run_request(ctx, serve, answer_error, headers, watch, gw.settle)


async def _serve(
    gw: Pipeline, ctx: RequestContext, scope: Scope, receive: Receive, send: Send,
    id_header: list[tuple[bytes, bytes]], watch: ClientWatch,
) -> None:
    await _authenticate(gw, ctx, scope)
    body = await _read(gw, scope, receive, count=False)
    alias = body["model"]
    ctx.requested_model = alias
    request, problems = build_request(gw, body, scope)
    ctx.request = request
    await gw.prepare(ctx)
    if problems and not _anthropic_only(gw, alias):
        raise InvalidRequest(
            f"{problems[0]} (model {alias!r} may be served by a deployment that is not "
            "Anthropic's)"
        )
    watch.start(receive)
    watch.defer()
    await gw.admit(ctx)
    watch.resume()
    ctx.mark("admitted")

    message_id = "msg_" + ctx.request_id.removeprefix("req_")
    events = compose(gw.source(ctx), gw.stages(ctx), ctx)
    if not request.stream:
        try:
            result = await collect_message(events, message_id=message_id, model=alias)
        finally:
            await aclose(events)
        watch.stop()
        await send_json(send, 200, result, id_header + _route_headers(ctx) + ctx.response_headers)
        ctx.delivered = "all"
        ctx.mark("finished")
        return
    chunks = message_sse(events, message_id=message_id, model=alias)
    try:
        first = await chunks.__anext__()  # the commit point: errors before it raise here
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await aclose(chunks)
        raise
    await _pump(ctx, chunks, first, send, watch,
                _SSE_HEADERS + id_header + _route_headers(ctx) + ctx.response_headers)


async def _pump(
    ctx: RequestContext, chunks: Any, first: bytes, send: Send, watch: ClientWatch,
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
        if ctx.error is None:
            ctx.delivered = "all"
        ctx.mark("finished")
    except Exception:  # after the commit point: one error event, then the end
        log.exception("stream of %s failed", ctx.request_id)
        ctx.fail(500, "internal error")
        watch.stop()
        event = error_event(StreamError(500, "The server had an error."))
        await send({"type": "http.response.body", "more_body": False,
                    "body": b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"})
    finally:
        await batches.aclose()


async def handle_count_tokens(gw: Pipeline, scope: Scope, receive: Receive, send: Send) -> None:
    """``{"input_tokens": N}``: the upstream's own count when the model's first deployment
    is Anthropic's, else tollway's (o200k_base over the chat translation)."""
    headers = id_headers(new_request_id(), client_request_id(scope))
    ctx = RequestContext(request_id="count")
    try:
        await _authenticate(gw, ctx, scope)
        body = await _read(gw, scope, receive, count=True)
        for name in EXTENSION_FIELDS:
            body.pop(name, None)
        counted = await _upstream_count(gw, body, scope)
        if counted is None:
            chat = to_chat(body, body["model"])
            await tokens.load()
            counted = {"input_tokens": tokens.count_prompt_tokens(chat.messages, chat.tools)}
        await send_json(send, 200, counted, headers)
    except GatewayError as exc:
        await send_anthropic_error(send, exc, headers)
    except ClientGone:
        return
    except Exception:
        log.exception("unhandled error counting tokens")
        await send_anthropic_error(
            send, GatewayError("The server had an error processing your request."), headers
        )


async def _upstream_count(
    gw: Pipeline, body: dict[str, Any], scope: Scope
) -> dict[str, Any] | None:
    deployment = gw.settings.models[body["model"]].deployments[0]
    provider = gw.providers.get(deployment.provider)
    count = getattr(provider, "count_tokens", None)
    if count is None:
        return None
    headers = {name.decode(): value.decode("latin-1")
               for name, value in scope["headers"] if name in _FORWARDED}
    result: dict[str, Any] | None = await count(body, deployment, headers)
    return result
