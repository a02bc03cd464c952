"""``Hooks``: the typed registries that plugins fill (it is the ``Host`` they get).

``create_app`` hands one ``Hooks`` to every plugin's ``register``, then ``seal()``s it:
each ordered registry becomes a tuple sorted by ``Phase`` (ties keep registration
order), and further registration is an error. ``Gateway`` and ``TollwayApp`` read the
sealed tuples; nothing else appends to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tollway.plugins.contract import (
    AccountFields,
    Admitter,
    Authenticator,
    Lifecycle,
    ModelFilter,
    Phase,
    Pipeline,
    Pricer,
    RawRoute,
    RequestHook,
    ResponseFields,
    Route,
    Settler,
    SourceWrapper,
    StageFactory,
    ToolResultInspector,
)

if TYPE_CHECKING:
    from tollway.config import Settings
    from tollway.context import Caller, RequestContext

__all__ = ["Hooks"]

H = TypeVar("H", bound=Callable[..., Any])


class _Ordered(list[tuple[int, int, Any]]):
    def add(self, phase: Phase, hook: Any) -> None:
        self.append((int(phase), len(self), hook))

    def sorted_hooks(self) -> tuple[Any, ...]:
        return tuple(hook for _phase, _seq, hook in sorted(self, key=lambda t: t[:2]))


class Hooks:
    """Every hook the plugins registered; sealed (read-only, ordered) before serving."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sealed = False
        self._request_hooks = _Ordered()
        self._admitters = _Ordered()
        self._source_wrappers = _Ordered()
        self._stages = _Ordered()
        self._settlers = _Ordered()
        self.authenticate: Authenticator | None = None
        self.price: Pricer | None = None
        self.request_hooks: tuple[RequestHook, ...] = ()
        self.admitters: tuple[Admitter, ...] = ()
        self.source_wrappers: tuple[SourceWrapper, ...] = ()
        self.stages: tuple[StageFactory, ...] = ()
        self.filter_stages: tuple[StageFactory, ...] = ()  # the FILTER-phase ones (firewalls)
        self.settlers: tuple[Settler, ...] = ()
        self.fields: list[ResponseFields] = []
        self.inspectors: list[ToolResultInspector] = []
        self.model_filters: list[ModelFilter] = []
        self.account_field_hooks: list[AccountFields] = []
        self.routes: list[Route] = []
        self.raw_routes: list[RawRoute] = []
        self.starts: list[Lifecycle] = []
        self.stops: list[Lifecycle] = []
        self._pipeline: Pipeline | None = None  # the gateway, set by the app

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("the pipeline exists once the app is assembled")
        return self._pipeline

    def attach(self, pipeline: Pipeline) -> None:
        """Called by the app with its gateway."""
        self._pipeline = pipeline

    # -- Host: registration ---------------------------------------------------------
    def authenticator(self, hook: Authenticator) -> None:
        self._open()
        if self.authenticate is not None:
            raise ValueError("two plugins register an authenticator; only one may")
        self.authenticate = hook

    def request_hook(self, hook: RequestHook, phase: Phase = Phase.EXTEND) -> None:
        self._open()
        self._request_hooks.add(phase, hook)

    def admitter(self, hook: Admitter, phase: Phase = Phase.MONEY) -> None:
        self._open()
        self._admitters.add(phase, hook)

    def source_wrapper(self, hook: SourceWrapper, phase: Phase = Phase.EXTEND) -> None:
        self._open()
        self._source_wrappers.add(phase, hook)

    def stage(self, hook: StageFactory, phase: Phase = Phase.EXTEND) -> None:
        self._open()
        self._stages.add(phase, hook)

    def pricer(self, hook: Pricer) -> None:
        self._open()
        if self.price is not None:
            raise ValueError("two plugins register a pricer; only one may")
        self.price = hook

    def response_fields(self, hook: ResponseFields) -> None:
        self._open()
        self.fields.append(hook)

    def settler(self, hook: Settler, phase: Phase) -> None:
        self._open()
        self._settlers.add(phase, hook)

    def tool_result_inspector(self, hook: ToolResultInspector) -> None:
        self._open()
        self.inspectors.append(hook)

    async def inspect_tool_result(self, name: str, text: str, ctx: RequestContext) -> str:
        for inspect in self.inspectors:
            text = await inspect(name, text, ctx)
        return text

    def model_filter(self, hook: ModelFilter) -> None:
        self._open()
        self.model_filters.append(hook)

    def account_fields(self, hook: AccountFields) -> None:
        self._open()
        self.account_field_hooks.append(hook)

    async def extra_account_fields(self, caller: Caller) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for hook in self.account_field_hooks:
            fields = await hook(caller)
            if fields:
                out.update(fields)
        return out

    async def visible_models(self, caller: Caller | None, aliases: list[str]) -> list[str]:
        """The aliases every ``ModelFilter`` lets the caller use."""
        for hook in self.model_filters:
            aliases = await hook(caller, aliases)
        return aliases

    def route(self, route: Route | RawRoute) -> None:
        self._open()
        (self.raw_routes if isinstance(route, RawRoute) else self.routes).append(route)  # type: ignore[arg-type]

    def on_start(self, hook: Lifecycle) -> None:
        self._open()
        self.starts.append(hook)

    def on_stop(self, hook: Lifecycle) -> None:
        self._open()
        self.stops.append(hook)

    # -- sealing ----------------------------------------------------------------------
    def seal(self) -> Hooks:
        """Order the registries by phase and refuse further registration."""
        self.request_hooks = self._request_hooks.sorted_hooks()
        self.admitters = self._admitters.sorted_hooks()
        self.source_wrappers = self._source_wrappers.sorted_hooks()
        self.stages = self._stages.sorted_hooks()
        ordered = sorted(self._stages, key=lambda t: t[:2])
        self.filter_stages = tuple(hook for phase, _seq, hook in ordered if phase == Phase.FILTER)
        self.settlers = self._settlers.sorted_hooks()
        self._sealed = True
        return self

    def _open(self) -> None:
        if self._sealed:
            raise RuntimeError("plugins register while the app is assembled, not after")
