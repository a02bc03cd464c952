"""The Responses API plugin: ``POST /v1/responses`` translated onto the chat pipeline.

A request is translated to a chat-completions body (``translate.chat_body``), then
runs exactly the steps of a chat completion (authentication, request hooks: the
request firewall; admission: billing's reservation; routing and fallback; response
stages: the response firewall, platform tools, the usage meter; settlement: ledger,
then trace) and its typed events become Responses events (``build.ResponseBuilder``).
The trace records ``api: {"endpoint": "responses", "mode": "translated"}``.
Errors before the first event are the HTTP status with OpenAI's error envelope;
after it (streaming), ``response.failed``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace as dataclass_replace
from typing import Any

import aiohttp
import orjson

from tollway.api.chat import (
    build_request,
    client_request_id,
    header_value,
    id_headers,
    new_request_id,
)
from tollway.api.encode import dumps
from tollway.api.http import read_body, send_error, send_json
from tollway.api.lifecycle import run_request
from tollway.api.watch import ClientWatch
from tollway.context import RequestContext
from tollway.errors import GatewayError, InvalidRequest, ModelNotFound, NotFound
from tollway.ids import random_hex
from tollway.pipeline.compose import compose
from tollway.plugins.contract import Host, RawRoute, Route
from tollway.plugins.docs import STR, Operation, obj
from tollway.providers.base import EXTENSION_FIELDS
from tollway.responses.build import ResponseBuilder
from tollway.responses.passthrough import (
    KEPT,
    UPSTREAM,
    cancel_upstream,
    open_upstream,
    relay,
    upstream_of,
    usage_from_responses,
)
from tollway.responses.store import ResponseStore, stored_routes
from tollway.responses.translate import chat_body, input_items
from tollway.routing.apis import speaks
from tollway.wire.openai import validate_chat_request

__all__ = ["ResponsesPlugin"]

log = logging.getLogger("tollway")

_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no")]  # fmt: skip
_DOC = Operation(
    summary="Create a model response (OpenAI Responses API), translated onto chat completions",
    tag="Responses",
    ok={200: {"content": {
        "application/json": {"schema": obj(["id", "object", "status", "output"], {
            "id": STR, "object": {"const": "response"}, "status": STR,
            "output": {"type": "array"}})},
        # with "stream": true, one server-sent event per step (response.created, …
        # response.completed), each a JSON object that names its type
        "text/event-stream": {"schema": obj(["event", "data"], {
            "event": STR,
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": obj(["type"], {"type": STR})},
        }, extra=False)},
    }}},
    errors=(400, 401, 402, 404, 429, 502, 503),
    body="CreateResponse",
    body_required=True,
    schemas={"CreateResponse": obj(["model", "input"], {"model": STR, "input": {}})},
)


class ResponsesPlugin:
    """Serves ``POST /v1/responses``."""

    name = "responses"

    def __init__(self) -> None:
        self.store: ResponseStore | None = None
        self._opening = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def register(self, host: Host) -> None:
        self._dsn = host.settings.database
        self._host = host  # its pipeline (the gateway) exists once the app is assembled
        host.route(RawRoute("POST", "/v1/responses", self.handle, _DOC, access="key"))
        for route in stored_routes(self._store):
            host.route(route)
        host.route(Route("POST", "/v1/responses/{response_id}/cancel", self.cancel, "key",
                         Operation(summary="Cancel a background response (pass-through only)",
                                   tag="Responses", ok={200: {"type": "object"}},
                                   errors=(400, 401, 404, 502))))  # fmt: skip
        host.on_start(self._start)
        host.on_stop(self._stop)

    async def _store(self) -> ResponseStore:
        """The store, opened (and migrated) when first needed: an app whose clients never
        use the Responses API needs no database for it."""
        if self.store is None:
            async with self._opening:
                if self.store is None:
                    self.store = await ResponseStore.open(self._dsn)
        return self.store

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(  # no cookie of one tenant's call on another's
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.store is not None:
            await self.store.close()

    async def cancel(self, request: dict[str, Any]) -> tuple[int, Any]:
        """``POST /v1/responses/{id}/cancel``: relayed to the upstream that holds a
        passed-through response; tollway's own responses are never background ones."""
        assert self._session is not None
        caller = request.get("auth")
        response_id = request["path_params"]["response_id"]
        found = await (await self._store()).get(caller.account_id if caller else "", response_id)
        if found is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        name = upstream_of(found[0])
        provider = self._host.settings.providers.get(name or "")
        if provider is None:
            raise InvalidRequest("Only background responses can be cancelled.",
                                 param="response_id")  # fmt: skip
        return 200, await cancel_upstream(self._session, provider, str(name), response_id)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        gw: Any = self._host.pipeline  # the Gateway: also its router, settings, hooks
        ctx = RequestContext(request_id=new_request_id(),
                             client_request_id=client_request_id(scope))
        ctx.api = {"endpoint": "responses", "mode": "translated"}
        headers = id_headers(ctx.request_id, ctx.client_request_id)
        watch = ClientWatch()

        async def serve() -> None:
            await self._serve(gw, ctx, scope, receive, send, headers, watch)

        async def answer_error(exc: GatewayError, with_headers: list[tuple[bytes, bytes]]) -> None:
            await _answer_error(send, exc, with_headers, ctx)

        await run_request(ctx, serve, answer_error, headers, watch, gw.settle)

    async def _serve(self, gw: Any, ctx: RequestContext, scope: Any, receive: Any, send: Any,
                     headers: list[tuple[bytes, bytes]], watch: ClientWatch) -> None:
        if gw.has_auth:
            caller = await gw.authenticate(header_value(scope, b"authorization"))
            ctx.account_id, ctx.key_id, ctx.account = caller.account_id, caller.key_id, caller
        body = _json_body(await read_body(receive, gw.settings.server.max_body_bytes, scope))
        items = [{"id": _item_id(i), **i} if isinstance(i, dict) and "id" not in i else i
                 for i in input_items(body)]  # fmt: skip
        native = self._native(gw, body.get("model"))
        if native and await self._pass_through(gw, ctx, body, items, native, receive, send,
                                               headers, watch):  # fmt: skip
            return
        context = await self._context(body, ctx.account_id or "")
        chat = chat_body(body, context + items)
        store = body.get("store", True)
        if not isinstance(store, bool):
            raise InvalidRequest("'store' must be a boolean.", param="store")
        stream = body.get("stream") is True
        if stream:
            chat["stream"] = True
            chat["stream_options"] = {"include_usage": True}
        validate_chat_request(chat, orjson.dumps(chat))
        alias = chat["model"]
        ctx.requested_model = alias
        if alias not in gw.settings.models:
            raise ModelNotFound(
                f"The model `{alias}` does not exist or you do not have access to it.",
                param="model")  # fmt: skip
        ctx.request = build_request(chat, stream, stream)
        await gw.prepare(ctx)
        watch.start(receive)
        watch.defer()
        await gw.admit(ctx)
        watch.resume()
        ctx.mark("admitted")
        builder = ResponseBuilder(body, "resp_" + ctx.request_id.removeprefix("req_"), alias)
        events = compose(gw.source(ctx), gw.stages(ctx), ctx)
        try:
            if not stream:
                async for event in events:
                    builder.feed(event)
                if builder.error is not None:
                    status = ctx.status if ctx.status >= 400 else 502
                    raise GatewayError(builder.error["message"], status=status,
                                       code=builder.error["code"])  # fmt: skip
                final = builder.finish()[-1]["response"]
                final.update(gw.response_fields(ctx))  # e.g. the firewall's verdicts
                await self._save(ctx, final, context, items)
                watch.stop()
                await send_json(send, 200, final, headers + ctx.response_headers)
                ctx.delivered = "all"
                ctx.mark("finished")
                return
            try:
                first = await events.__anext__()  # the commit point: errors before it raise
            except StopAsyncIteration:
                first = None
            await send({"type": "http.response.start", "status": 200,
                        "headers": _SSE + headers + ctx.response_headers})
            ctx.delivered = "partial"  # from here an error is an event, not a status
            out = builder.start()
            if first is not None:
                out += builder.feed(first)
            await _write(send, out)
            ctx.delivered = "partial"
            async for event in events:
                out = builder.feed(event)
                if out:
                    await _write(send, out)
            watch.stop()
            last = builder.finish()
            await self._save(ctx, last[-1]["response"], context, items)
            await _write(send, last)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if ctx.error is None:
                ctx.delivered = "all"
            ctx.mark("finished")
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    def _native(self, gw: Any, alias: Any) -> list[Any]:
        """The deployments to pass the request through to, when the router's first
        choice speaks the Responses API (else [] and the request is translated)."""
        if not isinstance(alias, str) or alias not in gw.settings.models:
            return []
        providers = gw.settings.providers
        deps = gw.router.plan(alias).deployments
        if not deps or not speaks(deps[0], providers, "responses"):
            return []
        return [d for d in deps if speaks(d, providers, "responses")
                and providers[d.provider].type == "openai"]  # fmt: skip

    async def _pass_through(self, gw: Any, ctx: RequestContext, body: dict[str, Any],
                            items: list[dict[str, Any]], native: list[Any], receive: Any,
                            send: Any, headers: list[tuple[bytes, bytes]],
                            watch: ClientWatch) -> bool:
        """Relay the request and its answer; meter from the upstream's final usage.

        False (nothing sent, nothing admitted) when a firewall filters this request's
        response or would redact its request: a relayed body and stream would escape
        it, so the caller translates the request onto the chat pipeline instead.
        """
        assert self._session is not None
        store = await self._store()
        ctx.api = {"endpoint": "responses", "mode": "pass-through"}
        alias = body["model"]
        ctx.requested_model = alias
        account = ctx.account_id or ""
        previous = body.get("previous_response_id")
        if previous is not None and (not isinstance(previous, str) or
                                     await store.get(account, previous) is None):
            raise NotFound(f"Previous response with id '{previous}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        stream = body.get("stream") is True
        cap = body.get("max_output_tokens")
        # a str at once: orjson's bytes (up to 16 times their length) would stay in this
        # frame for as long as the answer streams
        text = orjson.dumps({k: body.get(k) for k in ("instructions", "input", "tools")}).decode()
        ctx.request = build_request({"model": alias, "messages": [
            {"role": "user", "content": text}],
            **({"max_completion_tokens": cap} if type(cap) is int and cap > 0 else {}),
            **{k: body[k] for k in EXTENSION_FIELDS if k in body}},
            stream, stream)  # fmt: skip
        body = {k: v for k, v in body.items() if k not in EXTENSION_FIELDS}  # tollway's own
        await gw.prepare(ctx)
        if gw.filters_response(ctx) or ctx.request.messages[0].get("content") != text:
            ctx.firewall_verdicts.clear()  # the translated request is inspected afresh
            ctx.request = None
            ctx.api = {"endpoint": "responses", "mode": "translated"}
            return False
        watch.start(receive)
        watch.defer()
        await gw.admit(ctx)
        watch.resume()
        ctx.mark("admitted")
        if body.get("max_output_tokens") is None and ctx.request.max_output_tokens is not None:
            body["max_output_tokens"] = ctx.request.max_output_tokens  # the cap reserved for
        tab = ctx.budget
        call = await tab.open_call(ctx.request) if tab is not None else None
        redact = gw.redactor.error if gw.redactor else (lambda e: e)
        dep, resp = await open_upstream(self._session, gw.settings.providers, native, body,
                                        ctx, gw.router, redact)  # fmt: skip
        ctx.deployment, ctx.served_model = dep, dep.model
        if call is not None:
            call.deployment = dep
        final: dict[str, Any] = {}

        def on_final(obj: dict[str, Any]) -> dict[str, Any]:
            response = obj.get("response", obj)
            usage = usage_from_responses(response.get("usage"))
            if usage is not None:
                if call is not None:
                    call.reported, call.state = usage, "done"
                price = gw.hooks.price
                ctx.usage = dataclass_replace(usage, cost=price(usage, ctx) if price else None)
                response["usage"] = {**response["usage"], **(ctx.usage.cost or {})}
            if response.get("status") == "failed":
                err = response.get("error") or {}
                ctx.fail(502, str(err.get("message") or "the upstream response failed"),
                         err.get("code"))  # fmt: skip
            final["response"] = response
            return obj

        def on_delta(text: str) -> None:
            if call is not None:
                call.pieces.append(text)

        try:
            if not stream:
                raw = await resp.read()
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise GatewayError("The upstream answered with invalid JSON.",
                                       status=502) from None  # fmt: skip
                if not isinstance(obj, dict):
                    raise GatewayError("The upstream answered with invalid JSON.", status=502)
                on_final(obj)
                await self._save_native(account, final, items, dep.provider)
                watch.stop()
                await send_json(send, 200, obj, headers + ctx.response_headers)
                ctx.delivered = "all"
                ctx.mark("finished")
                return True
            await send({"type": "http.response.start", "status": 200,
                        "headers": _SSE + headers + ctx.response_headers})
            ctx.delivered = "partial"
            async for chunk in relay(resp, on_final, on_delta):
                if final and "saved" not in final:
                    final["saved"] = True
                    await self._save_native(account, final, items, dep.provider)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            watch.stop()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if ctx.error is None:
                ctx.delivered = "all"
            ctx.mark("finished")
        finally:
            if call is not None and call.state == "open":
                call.state = "partial"
            resp.release()
        return True

    async def _save_native(self, account: str, final: dict[str, Any],
                           items: list[dict[str, Any]], provider: str) -> None:  # fmt: skip
        response = final.get("response")
        if (isinstance(response, dict) and response.get("store")
                and isinstance(response.get("id"), str)
                and response.get("status") in KEPT):  # fmt: skip
            context = [{**UPSTREAM, "provider": provider}]
            await (await self._store()).save(account, response, context, items)

    async def _context(self, body: dict[str, Any], account: str) -> list[dict[str, Any]]:
        """The items before this request: the previous response's context, input, output."""
        previous = body.get("previous_response_id")
        if previous is None:
            return []
        if not isinstance(previous, str) or not previous:
            raise InvalidRequest("'previous_response_id' must be a string.",
                                 param="previous_response_id")  # fmt: skip
        found = await (await self._store()).get(account, previous)
        if found is None:
            raise NotFound(f"Previous response with id '{previous}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        context, items, response = found
        if upstream_of(context) is not None:
            raise InvalidRequest(
                f"Response '{previous}' was made by an upstream that keeps its own state; "
                "continue it with a model served by that upstream.",
                param="previous_response_id")  # fmt: skip
        return [*context, *items, *response.get("output", [])]

    async def _save(self, ctx: RequestContext, response: dict[str, Any],
                    context: list[dict[str, Any]],
                    items: list[dict[str, Any]]) -> None:  # fmt: skip
        if response.get("store") and response["status"] in ("completed", "incomplete"):
            await (await self._store()).save(ctx.account_id or "", response, context, items)


async def _answer_error(send: Any, exc: GatewayError, headers: list[tuple[bytes, bytes]],
                        ctx: RequestContext) -> None:  # fmt: skip
    """The error as a status before the stream began, else as its last event."""
    if ctx.delivered == "none":
        await send_error(send, exc, headers)
        return
    event = {"type": "error", "sequence_number": None, "code": exc.code,
             "message": exc.message, "param": None}  # fmt: skip
    await send({"type": "http.response.body", "more_body": False,
                "body": b"event: error\ndata: " + dumps(event) + b"\n\n"})




def _json_body(raw: bytes) -> Any:
    """The request body's JSON (the bytes are not kept: a stream would hold them to its end)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body "
                             "must be valid JSON.", code="invalid_json") from None


def _item_id(item: dict[str, Any]) -> str:
    prefix = {"function_call": "fc_", "function_call_output": "fco_"}.get(
        str(item.get("type")), "msg_")
    return prefix + random_hex(12)


async def _write(send: Any, events: list[dict[str, Any]]) -> None:
    body = b"".join(b"event: " + e["type"].encode() + b"\ndata: " + dumps(e) + b"\n\n"
                    for e in events)  # fmt: skip
    await send({"type": "http.response.body", "body": body, "more_body": True})

