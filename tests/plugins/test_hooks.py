"""The plugin registries: phase order enforced, one authenticator/pricer, sealed after assembly."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.plugins.contract import Phase
from tollway.plugins.hooks import Hooks


def _hooks() -> Hooks:
    return Hooks(SimpleNamespace())  # type: ignore[arg-type]


def _named(i: int) -> Any:
    async def hook(ctx: Any) -> None:
        return None

    hook.__name__ = f"h{i}"
    return hook


@given(st.lists(st.sampled_from(list(Phase)), max_size=12))
def test_every_ordered_registry_runs_by_phase_then_registration(phases: list[Phase]) -> None:
    hooks = _hooks()
    made = [_named(i) for i in range(len(phases))]
    for hook, phase in zip(made, phases, strict=True):
        hooks.settler(hook, phase)
        hooks.request_hook(hook, phase)
        hooks.admitter(hook, phase)
        hooks.stage(hook, phase)
        hooks.source_wrapper(hook, phase)
    hooks.seal()
    expected = [h for _p, _i, h in sorted((p, i, h) for i, (h, p) in
                                          enumerate(zip(made, phases, strict=True)))]
    for registry in (hooks.settlers, hooks.request_hooks, hooks.admitters, hooks.stages,
                     hooks.source_wrappers):
        assert list(registry) == expected


def test_money_settles_before_the_trace_whatever_the_plugin_order() -> None:
    hooks = _hooks()
    trace, money = _named(1), _named(2)
    hooks.settler(trace, Phase.OBSERVE)
    hooks.settler(money, Phase.MONEY)
    assert hooks.seal().settlers == (money, trace)


def test_one_authenticator_and_one_pricer() -> None:
    hooks = _hooks()
    hooks.authenticator(_named(1))
    with pytest.raises(ValueError, match="authenticator"):
        hooks.authenticator(_named(2))
    hooks.pricer(lambda usage, ctx: None)
    with pytest.raises(ValueError, match="pricer"):
        hooks.pricer(lambda usage, ctx: None)


def test_no_registration_after_sealing() -> None:
    hooks = _hooks().seal()
    with pytest.raises(RuntimeError):
        hooks.settler(_named(1), Phase.MONEY)


def test_the_pipeline_is_the_apps_gateway_once_assembled() -> None:
    from tests.conftest import sim_config
    from tollway.assembly import create_app
    from tollway.config import parse_settings

    hooks = _hooks()
    with pytest.raises(RuntimeError):
        _ = hooks.pipeline
    seen: list[Any] = []

    class Peek:
        name = "peek"

        def register(self, host: Any) -> None:
            seen.append(host)

    app = create_app(parse_settings(sim_config()), [Peek()])
    assert seen[0].pipeline is app.gateway
