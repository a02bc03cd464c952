"""Compiled policies and the set a gateway serves: name -> ready scanners.

``FirewallSet.from_config(settings.firewalls)`` compiles every configured policy at
start-up and each preset when first used; ``FirewallSet.get(name)`` is what a
request uses.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tollway.errors import InvalidRequest
from tollway.firewalls.config import PRESETS, PolicyConfig
from tollway.firewalls.joined import Checkpoints
from tollway.firewalls.registry import PRIORITY, spec_for
from tollway.firewalls.scanner import Rule, Scanner

__all__ = ["CompiledPolicy", "FirewallSet", "UnknownFirewall", "compile_policy"]


class UnknownFirewall(InvalidRequest):
    """A request named a firewall policy that does not exist."""

    code = "unknown_firewall"


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy ready to scan: one scanner plus where it applies, and the states its
    request side keeps for conversations' next requests (``joined.Checkpoints``)."""

    name: str
    config: PolicyConfig
    scanner: Scanner
    checkpoints: Checkpoints = field(default_factory=Checkpoints, compare=False, repr=False)
    monitor_only: bool = field(init=False, compare=False)
    """True when no rule changes text: streams then pass through untouched (worked out
    once: every response asks)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "monitor_only", all(r.action == "monitor" for r in self.scanner.rules))

    @property
    def on_request(self) -> bool:
        return self.config.where in ("request", "both")

    @property
    def on_response(self) -> bool:
        return self.config.where in ("response", "both")


def compile_policy(name: str, config: PolicyConfig) -> CompiledPolicy:
    """Build the detectors of ``config`` in priority order and compile one scanner."""
    rules: list[tuple[int, str, Rule]] = []
    for key, rule in config.rules().items():
        spec = spec_for(key)
        params = dict(rule.params)
        if spec.name == "custom" and ":" in key:
            params.setdefault("label", key.partition(":")[2])
        rules.append((PRIORITY[spec.name], key, Rule(spec.create(params), rule.action)))
    rules.sort(key=lambda t: (t[0], t[1]))
    return CompiledPolicy(name, config, Scanner([r for _, _, r in rules]))


class FirewallSet:
    """Every policy a gateway knows; presets unless overridden.

    Configured policies are compiled at start-up, so a bad one stops the gateway
    there, and so are the presets named in ``preload`` (the configuration's
    defaults). Any other preset (known good) is compiled the first time a request
    names it, so a process holds the scanners of the presets it uses, not all of
    them (≈ 0.2 MiB each, and their buckets as text needs them; strict-block takes
    ≈ 70 ms to compile, so the request path compiles one in a thread: ``ready`` and
    ``get``).
    """

    __slots__ = ("_lock", "_policies", "_presets")

    def __init__(
        self,
        policies: Mapping[str, CompiledPolicy],
        presets: Mapping[str, PolicyConfig] | None = None,
    ) -> None:
        self._policies = dict(policies)
        self._presets = {k: v for k, v in (presets or {}).items() if k not in self._policies}
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, configured: Mapping[str, PolicyConfig] | None = None, preload: Iterable[str] = ()
    ) -> FirewallSet:
        """The presets and the configured policies (configured names win); the configured
        ones and the presets in ``preload`` compiled now."""
        configured = configured or {}
        out = cls({name: compile_policy(name, cfg) for name, cfg in configured.items()}, PRESETS)
        for name in preload:
            if name in out._presets:
                out.get(name)
        return out

    @property
    def names(self) -> list[str]:
        return sorted({*self._policies, *self._presets})

    def ready(self, name: str) -> bool:
        """Whether ``get(name)`` returns without compiling (or raises at once: unknown)."""
        return name in self._policies or name not in self._presets

    def get(self, name: str) -> CompiledPolicy:
        """The policy called ``name``; 400 ``unknown_firewall`` naming it otherwise.
        A preset not compiled yet is compiled here (thread-safe)."""
        policy = self._policies.get(name)
        if policy is not None:
            return policy
        with self._lock:
            policy = self._policies.get(name)
            if policy is not None:  # another thread compiled it meanwhile
                return policy
            config = self._presets.get(name)
            if config is None:
                raise UnknownFirewall(
                    f"unknown firewall {name!r} (known: {', '.join(self.names)})",
                    param="firewall",
                ) from None
            policy = self._policies[name] = compile_policy(name, config)
            del self._presets[name]
            return policy
