"""``TollwayApp``: the ASGI application over a ``Gateway`` and the plugins' routes.

Assembled by ``tollway.assembly.create_app``. A raw ASGI app (no framework): one
dict lookup routes the hot endpoint; other endpoints are JSON handlers
``async (request) -> (status, body)`` registered by path pattern, where ``request``
is a dict with method, path, path_params, query, headers, json, auth, is_admin and the
request ids of the answer's headers (request_id, client_request_id).
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import re
import time
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson

from tollway.api.chat import (
    client_request_id,
    handle_chat,
    header_value,
    id_headers,
    new_request_id,
)
from tollway.api.http import ClientGone, Receive, Scope, Send, read_body, send_error, send_json
from tollway.api.openapi_spec import OPERATIONS
from tollway.api.protocol import ConnectionLimits
from tollway.config import Settings
from tollway.errors import AuthenticationError, GatewayError, InvalidRequest, NotFound
from tollway.gateway import Gateway
from tollway.plugins.contract import Access, ErrorSender, JsonHandler, RawHandler
from tollway.plugins.docs import Operation
from tollway.plugins.hooks import Hooks
from tollway.providers import pacing
from tollway.providers.base import Provider
from tollway.providers.registry import create_provider
from tollway.routing.redact import SecretRedactor
from tollway.routing.select import Router

__all__ = ["TollwayApp"]

log = logging.getLogger("tollway")


class TollwayApp:
    """The ASGI callable."""

    def __init__(self, settings: Settings, hooks: Hooks | None = None) -> None:
        """``hooks``: the plugins' sealed registries (None: no plugin, the bare core)."""
        hooks = hooks if hooks is not None else Hooks(settings).seal()
        self.settings = settings
        self.providers: dict[str, Provider] = {}
        self.admin_key = settings.admin_key or os.environ.get("TOLLWAY_ADMIN_KEY")
        self.gateway = Gateway(
            settings=settings,
            router=Router(settings.models, self.providers, settings.routing),
            providers=self.providers,
            hooks=hooks,
            redactor=SecretRedactor.for_settings(settings, self.admin_key),
        )
        self._routes: list[tuple[str, re.Pattern[str], JsonHandler, Access]] = []
        self._raw: dict[tuple[str, str], RawHandler] = {}
        # raw ASGI apps owning a whole path prefix (HTML, e.g. /dashboard): not in route_table
        self._prefixes: list[tuple[str, RawHandler]] = []
        self._patterns: list[tuple[str, str, str]] = []  # as registered, for the docs
        self._docs: dict[tuple[str, str], Operation] = {
            ("POST", "/v1/chat/completions"): OPERATIONS[("POST", "/v1/chat/completions")]
        }
        self._openapi_document: dict[str, Any] | None = None
        # path -> the error envelope of the protocol mounted there (else OpenAI's)
        self.error_senders: dict[str, ErrorSender] = {}
        self._session: aiohttp.ClientSession | None = None
        self._hooks = hooks
        server = settings.server
        # read by TollwayHttpProtocol (the server's HTTP parser) for this app's connections
        self.connection_limits = ConnectionLimits(
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
            max_header_bytes=server.max_header_bytes,
            max_connections_per_ip=server.max_connections_per_ip,
        )
        builtins: list[tuple[str, str, JsonHandler, Access]] = [
            ("GET", "/health", self._health, "public"),
            ("GET", "/openapi.json", self._openapi, "public"),
            ("GET", "/v1/models", self._models, "key"),
            ("GET", "/v1/models/{model}", self._model, "key"),
        ]
        for method, pattern, handler, access in builtins:
            self.add_route(method, pattern, handler, access, OPERATIONS[(method, pattern)])
        for route in hooks.routes:
            self.add_route(route.method, route.pattern, route.handler, route.access, route.doc)
        for raw in hooks.raw_routes:
            if raw.prefix:
                self.add_prefix_route(raw.path, raw.handler)
                continue
            self.add_raw_route(raw.method, raw.path, raw.handler, raw.doc, access=raw.access)
            if raw.errors is not None:
                self.error_senders[raw.path] = raw.errors
        hooks.attach(self.gateway)  # plugins serving another protocol run the same steps
    # -- registration -------------------------------------------------------------
    def add_route(
        self, method: str, pattern: str, handler: JsonHandler, access: Access,
        doc: Operation | None = None,
    ) -> None:  # fmt: skip
        """Mount a JSON handler; ``{name}`` segments become ``path_params``."""
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, regex, handler, access))
        self._patterns.append((method, pattern, access))
        if doc is not None:
            self._docs[(method, pattern)] = doc

    def add_raw_route(
        self, method: str, path: str, handler: RawHandler, doc: Operation | None = None,
        access: str = "raw",
    ) -> None:
        """Mount a raw ASGI handler on an exact path (e.g. ``/metrics``); ``access``
        documents who may call it (the handler checks it itself)."""
        self._raw[(method, path)] = handler
        self._patterns.append((method, path, access))
        if doc is not None:
            self._docs[(method, path)] = doc

    def add_prefix_route(self, prefix: str, handler: RawHandler) -> None:
        """Mount a raw ASGI app on ``prefix`` and every path under it (any method).

        For HTML (the dashboard): such routes are deliberately not in ``route_table``
        nor in ``/openapi.json``, which describe the JSON API.
        """
        self._prefixes.append((prefix, handler))

    def route_docs(self) -> dict[tuple[str, str], Operation]:
        """What each mounted endpoint takes and returns (for ``/openapi.json``)."""
        return dict(self._docs)

    def route_table(self) -> list[tuple[str, str, str]]:
        """Every mounted endpoint as ``(method, path pattern, access)``, chat included."""
        return [("POST", "/v1/chat/completions", "key"), *self._patterns]

    # -- ASGI ---------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
                await handle_chat(self.gateway, scope, receive, send)
                return
            raw = self._raw.get((scope["method"], scope["path"]))
            if raw is not None:
                await raw(scope, receive, send)
                return
            if self._prefixes:
                path = scope["path"]
                for prefix, app in self._prefixes:
                    if path == prefix or path.startswith(prefix + "/"):
                        await app(scope, receive, send)
                        return
            await self._json_route(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # reported to the server, which exits
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Open the upstream connection pool, build the providers, start the plugins."""
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda o: orjson.dumps(o).decode(),
            auto_decompress=True,
            # one pool for every tenant's requests: a cookie an upstream sets must not
            # ride on the next tenant's (and no jar is searched on every request)
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        for name, config in self.settings.providers.items():
            self.providers[name] = create_provider(name, config, self._session)
        pacing.configure(self.settings.server.coalesce_under_load_ms)  # per process
        await self.gateway.start()
        # everything built so far lives as long as the process: keep it out of the
        # collector's generations, and collect the young generation less often
        # (requests allocate many short-lived objects and few reference cycles)
        gc.collect()
        gc.freeze()
        gc.set_threshold(7000, 20, 20)

    async def shutdown(self) -> None:
        await self.gateway.stop()
        for provider in self.providers.values():
            await provider.aclose()
        if self._session is not None:
            await self._session.close()

    async def _json_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, client_id = new_request_id(), client_request_id(scope)
        headers = id_headers(request_id, client_id)
        method, path = scope["method"], scope["path"]
        try:
            for route_method, regex, handler, access in self._routes:
                if route_method != method:
                    continue
                match = regex.match(path)
                if match is None:
                    continue
                request = await self._request(scope, receive, match.groupdict(), access)
                request["request_id"], request["client_request_id"] = request_id, client_id
                status, body = await handler(request)
                await send_json(send, status, body, headers)
                return
            allowed = self._allowed_methods(path)
            if allowed:
                raise InvalidRequest(
                    f"Method {method} is not allowed on {path}.", status=405,
                    code="method_not_allowed", headers={"allow": ", ".join(allowed)},
                )  # fmt: skip
            raise NotFound(f"Unknown request URL: {method} {path}.", code="unknown_url")
        except GatewayError as exc:
            sender = self.error_senders.get(path)
            if sender is not None:
                await sender(send, exc, headers)
                return
            await send_error(send, exc, headers)
        except ClientGone:
            return  # nobody is left to answer
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            await send_error(
                send, GatewayError("The server had an error processing your request."), headers
            )

    def _allowed_methods(self, path: str) -> list[str]:
        methods = {m for m, regex, _h, _a in self._routes if regex.match(path)}
        methods |= {m for m, raw_path in self._raw if raw_path == path}
        if path == "/v1/chat/completions":
            methods.add("POST")
        return sorted(methods)

    async def _request(
        self, scope: Scope, receive: Receive, params: dict[str, str], access: Access
    ) -> dict[str, Any]:
        # Authenticate first: an unknown caller costs no body read and learns nothing
        # about how its body would have been judged.
        authorization = header_value(scope, b"authorization")
        auth = None
        if access == "admin":
            token = (authorization or "").removeprefix("Bearer ").strip()
            if not self.admin_key or not hmac.compare_digest(
                token.encode(), self.admin_key.encode()
            ):
                raise AuthenticationError("A valid admin key is required.")
        elif access == "key":
            auth = await self.gateway.authenticate(authorization)
        body = await read_body(receive, self.settings.server.max_body_bytes, scope)
        parsed = None
        if body:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise InvalidRequest("The request body must be valid JSON.") from None
            if parsed is None:  # a body of JSON null is not "no body"
                raise InvalidRequest("The request body must be a JSON object, not null.")
        query = scope.get("query_string", b"").decode("utf-8", "replace")
        return {
            "method": scope["method"],
            "path": scope["path"],
            "path_params": _clean(params),
            "query": _clean(_single_values(parse_qsl(query, keep_blank_values=True))),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "json": parsed,
            "auth": auth,
            "is_admin": access == "admin",
        }

    # -- built-in endpoints ---------------------------------------------------------
    async def _health(self, request: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    async def _openapi(self, request: dict[str, Any]) -> tuple[int, Any]:
        if self._openapi_document is None:  # routes are fixed once the app is built
            from tollway.api.openapi import openapi_document

            self._openapi_document = openapi_document(self)
        return 200, self._openapi_document

    def _model_json(self, alias: str) -> dict[str, Any]:
        return {
            "id": alias,
            "object": "model",
            "created": _STARTED,
            "owned_by": self.settings.models[alias].owned_by,
        }

    async def _visible(self, request: dict[str, Any], aliases: list[str]) -> list[str]:
        """The aliases the caller may use (the plugins' ``ModelFilter`` hooks)."""
        if not self._hooks.model_filters:
            return aliases
        return await self._hooks.visible_models(request.get("auth"), aliases)

    async def _models(self, request: dict[str, Any]) -> tuple[int, Any]:
        aliases = await self._visible(request, list(self.settings.models))
        return 200, {"object": "list", "data": [self._model_json(m) for m in aliases]}

    async def _model(self, request: dict[str, Any]) -> tuple[int, Any]:
        alias = request["path_params"]["model"]
        if alias not in self.settings.models or not await self._visible(request, [alias]):
            raise NotFound(f"The model `{alias}` does not exist.", code="model_not_found")
        return 200, self._model_json(alias)


_STARTED = int(time.time())


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Query parameters by name; one given twice is refused (every documented one is a
    single value: ``?replace=x&replace=true`` would otherwise be read as ``true``)."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            shown = name.replace("\x00", "")
            raise InvalidRequest(f"'{shown}' is given more than once; give it once.",
                                 param=shown, code="invalid_value")  # fmt: skip
        values[name] = value
    return values


def _clean(values: dict[str, str]) -> dict[str, str]:
    """Path or query parameters, refusing NUL characters (no database can store them)."""
    for name, value in values.items():
        if "\x00" in value or "\x00" in name:
            raise InvalidRequest(f"'{name.replace(chr(0), '')}' must not contain NUL characters.",
                                 param=name.replace("\x00", ""), code="invalid_value")  # fmt: skip
    return values

