"""The embeddings plugin: ``POST /v1/embeddings`` through the gateway's hooks.

A request runs the same steps as a chat completion: authentication (the route's
``key`` access), the request hooks (the request firewall sees each text input as a
user message, and its redactions are what goes upstream), admission (billing reserves
the input tokens at the dearest input price of the alias's deployments, plus one
output token), the call, then settlement (ledger) and the trace, whose ``api`` says
``{"endpoint": "embeddings", "mode": "pass-through"}``. The call goes to the alias's
deployments that speak embeddings (``tollway.routing.apis``) in the router's order;
a retryable upstream failure moves on to the next one, as for chat.

Billing: the call is recorded on the request's tab with the upstream's reported
``prompt_tokens`` (else tollway's count, marked estimated), so the debit is input
tokens × the deployment's input price (plus the platform fee), and ``usage`` in the
answer carries the same cost figures as the ledger entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from tollway.api.chat import new_request_id
from tollway.api.sse import usage_json
from tollway.chunks import Usage
from tollway.context import Attempt, RequestContext
from tollway.embeddings.request import EmbeddingsRequest, parse_embeddings_request
from tollway.embeddings.upstream import call_embeddings
from tollway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from tollway.plugins.contract import Host, Route
from tollway.plugins.docs import INT, STR, Operation, obj
from tollway.providers.base import EXTENSION_FIELDS, ChatRequest
from tollway.routing.apis import speaks

__all__ = ["EmbeddingsPlugin"]

log = logging.getLogger("tollway")

_DOC = Operation(
    summary="Create embeddings (OpenAI-compatible): routed, metered, traced",
    tag="Embeddings",
    ok={200: obj(["object", "data", "model", "usage"], {
        "object": {"const": "list"}, "data": {"type": "array"}, "model": STR,
        "usage": obj(["prompt_tokens", "total_tokens"], {"prompt_tokens": INT,
                                                         "total_tokens": INT}),
    })},
    errors=(400, 401, 402, 404, 429, 502, 503),
    body="CreateEmbeddingRequest",
    body_required=True,
    schemas={"CreateEmbeddingRequest": obj(["model", "input"], {
        "model": STR,
        "input": {"description": "a string, an array of strings, an array of token ids, "
                                 "or an array of token-id arrays"},
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": INT,
        "user": STR,
    })},
)


class EmbeddingsPlugin:
    """Serves ``POST /v1/embeddings``; holds the HTTP session its upstream calls use."""

    name = "embeddings"

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def register(self, host: Host) -> None:
        self._host = host  # its pipeline (the gateway) exists once the app is assembled
        host.route(Route("POST", "/v1/embeddings", self.handle, "key", _DOC))
        host.on_start(self._start)
        host.on_stop(self._stop)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(  # no cookie of one tenant's call on another's
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: dict[str, Any]) -> tuple[int, Any]:
        """Serve one request; settled and traced whatever its outcome."""
        gw: Any = self._host.pipeline  # the Gateway: also its router, settings, hooks
        ctx = RequestContext(request_id=request.get("request_id") or new_request_id(),
                             client_request_id=request.get("client_request_id"))
        ctx.api = {"endpoint": "embeddings", "mode": "pass-through"}
        caller = request.get("auth")
        if caller is not None:
            ctx.account_id, ctx.key_id, ctx.account = caller.account_id, caller.key_id, caller
        try:
            return 200, await self._serve(gw, ctx, request["json"])
        except GatewayError as exc:
            ctx.fail(exc.status, exc.message, exc.code, exc.type)
            raise
        except asyncio.CancelledError:
            ctx.client_disconnected = True
            ctx.fail(499, "client disconnected", "client_disconnected")
            raise
        except Exception:
            log.exception("unhandled error in embeddings request %s", ctx.request_id)
            ctx.fail(500, "internal error")
            raise
        finally:
            await gw.settle(ctx)

    async def _serve(self, gw: Any, ctx: RequestContext, body: Any) -> dict[str, Any]:
        parsed = parse_embeddings_request(body)
        alias = parsed.model
        ctx.requested_model = alias
        model = gw.settings.models.get(alias)
        if model is None:
            raise ModelNotFound(
                f"The model `{alias}` does not exist or you do not have access to it.",
                param="model",
            )
        providers = gw.settings.providers
        if not any(speaks(d, providers, "embeddings") for d in model.deployments):
            raise InvalidRequest(
                f"The model `{alias}` does not serve embeddings (none of its deployments "
                "speaks the embeddings API).", param="model", code="model_not_supported",
            )  # fmt: skip
        texts = [i for i in parsed.inputs if isinstance(i, str)]
        ctx.request = ChatRequest(
            body={"model": alias}, model=alias, stream=False, include_usage=False,
            messages=[{"role": "user", "content": t} for t in texts] or
                     [{"role": "user", "content": _token_stand_in(parsed.inputs)}],
            max_output_tokens=1,  # embeddings have no output: reserve (almost) none
            extensions={k: parsed.body[k] for k in EXTENSION_FIELDS if k in parsed.body},
        )  # fmt: skip
        parsed.body = {k: v for k, v in parsed.body.items() if k not in EXTENSION_FIELDS}
        await gw.prepare(ctx)
        inputs = _after_firewall(parsed, ctx.request.messages, texts)
        if ctx.request.messages and not texts:  # token arrays only: admission's count
            ctx.request.messages = [{"role": "user", "content": _token_stand_in(inputs)}]
        await gw.admit(ctx)
        ctx.mark("admitted")
        if inputs is not parsed.inputs:
            parsed.body = {**parsed.body, "input": inputs if len(inputs) > 1 else inputs[0]}
        return await self._route(gw, ctx, parsed, inputs)

    async def _route(
        self, gw: Any, ctx: RequestContext, parsed: EmbeddingsRequest,
        inputs: list[str | list[int]],
    ) -> dict[str, Any]:  # fmt: skip
        assert self._session is not None and ctx.request is not None
        router = gw.router
        plan = router.plan(parsed.model)
        providers = gw.settings.providers
        for dep, reason in plan.skipped:
            ctx.attempts.append(Attempt(dep.id, "skipped", None, reason))
        candidates = [d for d in plan.deployments if speaks(d, providers, "embeddings")]
        if not candidates:
            raise UpstreamUnavailable(
                f"no deployment of model {parsed.model!r} that serves embeddings is available now"
            )
        tab = ctx.budget
        call = await tab.open_call(ctx.request) if tab is not None else None
        last: UpstreamError | None = None
        for dep in candidates:
            started = time.perf_counter()
            router.started(dep)
            if call is not None:
                call.deployment = dep  # from here the upstream may have read the input
            ok = False
            try:
                data, reported, served = await call_embeddings(
                    self._session, providers[dep.provider], dep.provider, dep,
                    parsed.body, inputs,
                )  # fmt: skip
                ok = True
            except (UpstreamError, TimeoutError, OSError, aiohttp.ClientError) as exc:
                error = exc if isinstance(exc, UpstreamError) else UpstreamError(
                    f"provider {dep.provider!r} could not be reached: {type(exc).__name__}"
                )  # fmt: skip
                if gw.redactor:
                    error = gw.redactor.error(error)
                ctx.attempts.append(Attempt(
                    dep.id, "error", error.status, error.message,
                    (time.perf_counter() - started) * 1000, error.misconfigured,
                ))  # fmt: skip
                if call is not None:
                    call.deployment = None  # refused or failed: nothing to bill
                if not error.retryable:
                    raise error from None
                last = error
                continue
            finally:
                router.finished(dep, ok, None)
            ctx.attempts.append(Attempt(dep.id, "ok", 200, None,
                                        (time.perf_counter() - started) * 1000))  # fmt: skip
            ctx.deployment = dep
            ctx.served_model = served or dep.model
            usage = _usage(reported, inputs)
            if call is not None:
                call.reported, call.state = usage, "done"
            return self._answer(gw, ctx, data, usage)
        assert last is not None
        raise last

    def _answer(
        self, gw: Any, ctx: RequestContext, data: list[dict[str, Any]], usage: Usage
    ) -> dict[str, Any]:
        price = gw.hooks.price
        cost = price(usage, ctx) if price is not None else None
        ctx.usage = Usage(prompt_tokens=usage.prompt_tokens, estimated=usage.estimated,
                          cost=cost)  # fmt: skip
        ctx.delivered = "all"
        ctx.mark("finished")
        shown = usage_json(ctx.usage)
        shown.pop("completion_tokens", None)
        return {"object": "list", "data": data, "model": ctx.requested_model, "usage": shown}


def _usage(reported: int | None, inputs: list[str | list[int]]) -> Usage:
    if reported is not None:
        return Usage(prompt_tokens=reported)
    from tollway import tokens

    counted = sum(len(i) if isinstance(i, list) else tokens.count_text(i) for i in inputs)
    return Usage(prompt_tokens=counted, estimated=True)


def _token_stand_in(inputs: list[str | list[int]]) -> str:
    """Text with about as many tokens as the token arrays (for admission's count)."""
    n = sum(len(i) for i in inputs if isinstance(i, list))
    return " x" * n


def _after_firewall(
    parsed: EmbeddingsRequest, messages: list[dict[str, Any]], texts: list[str]
) -> list[str | list[int]]:
    """The inputs with the request firewall's rewrites of the text ones applied."""
    if not texts:
        return parsed.inputs
    seen = [m.get("content") for m in messages if m.get("role") == "user"]
    if seen == texts:
        return parsed.inputs
    if len(seen) != len(texts) or not all(isinstance(s, str) for s in seen):
        raise InvalidRequest("The request firewall changed the input in a way embeddings "
                             "cannot follow.", param="input")  # fmt: skip
    rewritten = iter([s for s in seen if isinstance(s, str)])
    return [next(rewritten) if isinstance(i, str) else i for i in parsed.inputs]

