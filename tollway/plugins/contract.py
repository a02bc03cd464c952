"""The plugin contract: every hook a feature may implement, one line each, and their order.

A plugin is an object with a ``name`` and a ``register(host)`` method (and, optionally,
``cli(subparsers)`` and ``prepare_demo(settings)``). ``register`` reads ``host.settings``
and adds the hooks it needs through ``Host``; it may add nothing (a feature turned off).
Core code calls these hooks through ``Gateway`` and ``TollwayApp``; it never imports a
feature. Hooks run in this order for every chat request:

1. ``Authenticator``  the bearer key → the caller (at most one; none: no auth)
2. ``RequestHook``    inspect or rewrite the parsed request, before admission (a 400 here
                      reserves nothing and reaches no upstream)
3. ``Admitter``       admit the request or refuse it (402, 429); may reserve money
4. ``SourceWrapper``  wrap the model call (the first that answers wins: the tool loop)
5. ``StageFactory``   a response stage over the typed events (``None``: not for this one)
6. ``Pricer``         the cost figures the final usage carries (at most one)
7. ``ResponseFields`` extra top-level fields of a non-streaming response
8. ``Settler``        after the response, always (error, disconnect, cancellation too)

Request hooks, admitters, source wrappers, stages and settlers run by ``Phase``, then
in plugin order: money is settled before the trace records it, the firewall filters
before anything else sees the request. ``Route``/``RawRoute``, ``Lifecycle`` hooks
(``on_start`` in plugin order, ``on_stop`` in reverse) and ``ToolResultInspector``
(one feature's view of another's tool results) complete the contract.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from tollway.chunks import Event, Usage
from tollway.context import Caller, RequestContext
from tollway.pipeline.compose import Stage
from tollway.providers.base import ChatRequest, Provider

if TYPE_CHECKING:
    from tollway.asgi import Receive, Scope, Send
    from tollway.config import Settings
    from tollway.errors import GatewayError
    from tollway.plugins.docs import Operation

__all__ = [
    "Access",
    "Admitter",
    "Authenticator",
    "CallModel",
    "Caller",
    "CliPlugin",
    "ErrorSender",
    "Host",
    "AccountFields",
    "JsonHandler",
    "Lifecycle",
    "ModelFilter",
    "Phase",
    "Pipeline",
    "Plugin",
    "Pricer",
    "RawHandler",
    "RawRoute",
    "RequestHook",
    "ResponseFields",
    "Route",
    "Settler",
    "SourceWrapper",
    "StageFactory",
    "ToolResultInspector",
]


class Phase(IntEnum):
    """Where an ordered hook runs among the others (lower first; ties: plugin order)."""

    FILTER = 10  # refuse or rewrite what others will see (firewalls)
    EXTEND = 20  # add to the request (platform tools); the default
    MONEY = 30  # reserve, hold to and settle the money (billing)
    OBSERVE = 40  # record what happened, as settled and filtered (tracing)


Authenticator = Callable[[str | None], Awaitable[Caller]]
"""The ``Authorization`` header's value → the caller; raises ``AuthenticationError``."""
RequestHook = Callable[[RequestContext], Awaitable[None]]
"""Sees ``ctx.request`` after validation, before admission; may rewrite it or raise."""
Admitter = Callable[[RequestContext], Awaitable[None]]
"""Admits the request (may reserve, fix the output cap) or raises (402, 429)."""
CallModel = Callable[[ChatRequest], AsyncIterator[Event]]
"""One upstream call (routed, retried, metered) for a request."""
SourceWrapper = Callable[[ChatRequest, RequestContext, CallModel], AsyncIterator[Event] | None]
"""The request's events built around ``call_model``, or None to leave it alone."""
StageFactory = Callable[[RequestContext], Stage | None]
"""The response stage for this request, or None when it has none."""
Pricer = Callable[[Usage, RequestContext], dict[str, Any] | None]
"""The cost figures the final usage carries (``usage.cost``), or None."""
ResponseFields = Callable[[RequestContext], dict[str, Any] | None]
"""Top-level fields added to a whole (non-streaming) response, or None."""
Settler = Callable[[RequestContext], Awaitable[None]]
"""Runs once the request is over, whatever its outcome; must be idempotent."""
Lifecycle = Callable[[], Awaitable[None]]
"""A start or stop hook (opens or closes what the plugin's hooks use)."""
ModelFilter = Callable[[Caller | None, list[str]], Awaitable[list[str]]]
"""The model aliases the caller may use, of those given (``GET /v1/models``; none: all)."""
AccountFields = Callable[[Caller], Awaitable[dict[str, Any] | None]]
"""Extra top-level fields of the caller's ``GET /v1/account`` (e.g. spend caps), or None."""
ToolResultInspector = Callable[[str, str, RequestContext], Awaitable[str]]
"""``(tool name, result text, ctx)`` → the text the model and client see; may raise."""
JsonHandler = Callable[[dict[str, Any]], Awaitable[tuple[int, Any]]]
"""A JSON endpoint: the parsed request dict → ``(status, body)``."""
RawHandler = Callable[["Scope", "Receive", "Send"], Awaitable[None]]
"""A raw ASGI endpoint (e.g. ``/metrics``)."""
Access = Literal["public", "key", "admin"]


@dataclass(frozen=True, slots=True)
class Route:
    """A JSON endpoint; ``{name}`` segments of ``pattern`` become ``path_params``."""

    method: str
    pattern: str
    handler: JsonHandler
    access: Access
    doc: Operation | None = None  # for GET /openapi.json (undocumented: marked so)


ErrorSender = Callable[["Send", "GatewayError", list[tuple[bytes, bytes]]], Awaitable[None]]
"""Writes a tollway error in another protocol's envelope (e.g. Anthropic's)."""


@dataclass(frozen=True, slots=True)
class RawRoute:
    """A raw ASGI endpoint on an exact path. ``access`` documents who may call it (the
    handler checks); ``errors`` writes the app's own errors on that path (405 for another
    method) in the endpoint's protocol (default: OpenAI's envelope). With ``prefix``, the
    handler owns ``path`` and every path under it, any method (HTML such as the dashboard:
    kept out of the route table and ``/openapi.json``; ``method``, ``doc``, ``access`` and
    ``errors`` are unused)."""

    method: str
    path: str
    handler: RawHandler
    doc: Operation | None = None
    access: Access | Literal["raw"] = "raw"
    errors: ErrorSender | None = None
    prefix: bool = False


class Pipeline(Protocol):
    """The request path, step by step (``Gateway``), for a plugin that serves another
    inbound protocol (its own route runs the same steps as ``api/chat.py``)."""

    settings: Settings
    providers: dict[str, Provider]  # by name, built at start (e.g. to ask one to count)

    async def authenticate(self, authorization: str | None) -> Caller | None: ...
    async def prepare(self, ctx: RequestContext) -> None: ...
    async def admit(self, ctx: RequestContext) -> None: ...
    def source(self, ctx: RequestContext) -> AsyncIterator[Event]: ...
    def stages(self, ctx: RequestContext) -> list[Stage]: ...
    def filters_response(self, ctx: RequestContext) -> bool: ...
    def response_fields(self, ctx: RequestContext) -> dict[str, Any]: ...
    async def settle(self, ctx: RequestContext) -> None: ...


class Host(Protocol):
    """What ``Plugin.register`` gets: the settings and one method per hook."""

    @property
    def settings(self) -> Settings: ...
    @property
    def pipeline(self) -> Pipeline:
        """The gateway, once the app is assembled (read it when a request comes, not in
        ``register``)."""
        ...
    def authenticator(self, hook: Authenticator) -> None: ...
    def request_hook(self, hook: RequestHook, phase: Phase = Phase.EXTEND) -> None: ...
    def admitter(self, hook: Admitter, phase: Phase = Phase.MONEY) -> None: ...
    def source_wrapper(self, hook: SourceWrapper, phase: Phase = Phase.EXTEND) -> None: ...
    def stage(self, hook: StageFactory, phase: Phase = Phase.EXTEND) -> None: ...
    def pricer(self, hook: Pricer) -> None: ...
    def response_fields(self, hook: ResponseFields) -> None: ...
    def settler(self, hook: Settler, phase: Phase) -> None: ...
    def tool_result_inspector(self, hook: ToolResultInspector) -> None: ...
    def inspect_tool_result(self, name: str, text: str, ctx: RequestContext) -> Awaitable[str]:
        """Run every registered ``ToolResultInspector`` in turn (for the tools feature)."""
        ...
    def model_filter(self, hook: ModelFilter) -> None: ...
    def account_fields(self, hook: AccountFields) -> None: ...
    def extra_account_fields(self, caller: Caller) -> Awaitable[dict[str, Any]]:
        """Every registered ``AccountFields`` hook's fields (for the billing feature)."""
        ...
    def route(self, route: Route | RawRoute) -> None: ...
    def on_start(self, hook: Lifecycle) -> None: ...
    def on_stop(self, hook: Lifecycle) -> None: ...


@runtime_checkable
class Plugin(Protocol):
    """A feature: ``register`` adds its hooks; ``cli`` and ``prepare_demo`` are optional."""

    name: str

    def register(self, host: Host) -> None: ...


class CliPlugin(Protocol):
    """A plugin that adds ``tollway`` subcommands."""

    def cli(self, subparsers: argparse._SubParsersAction[Any]) -> None: ...
