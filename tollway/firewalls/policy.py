"""Compiled policies and the set a gateway serves: name -> ready scanners.

``FirewallSet.from_config(settings.firewalls)`` compiles every policy once at
start-up (presets included); ``FirewallSet.get(name)`` is what a request uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tollway.errors import InvalidRequest
from tollway.firewalls.config import PRESETS, PolicyConfig
from tollway.firewalls.registry import PRIORITY, spec_for
from tollway.firewalls.scanner import Rule, Scanner

__all__ = ["CompiledPolicy", "FirewallSet", "UnknownFirewall", "compile_policy"]


class UnknownFirewall(InvalidRequest):
    """A request named a firewall policy that does not exist."""

    code = "unknown_firewall"


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy ready to scan: one scanner plus where it applies."""

    name: str
    config: PolicyConfig
    scanner: Scanner

    @property
    def on_request(self) -> bool:
        return self.config.where in ("request", "both")

    @property
    def on_response(self) -> bool:
        return self.config.where in ("response", "both")

    @property
    def monitor_only(self) -> bool:
        """True when no rule changes text: streams then pass through untouched."""
        return all(r.action == "monitor" for r in self.scanner.rules)


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
    """Every policy a gateway knows, compiled; presets unless overridden."""

    __slots__ = ("_policies",)

    def __init__(self, policies: Mapping[str, CompiledPolicy]) -> None:
        self._policies = dict(policies)

    @classmethod
    def from_config(cls, configured: Mapping[str, PolicyConfig] | None = None) -> FirewallSet:
        """Compile the presets and the configured policies (configured names win)."""
        merged = {**PRESETS, **(configured or {})}
        return cls({name: compile_policy(name, cfg) for name, cfg in merged.items()})

    @property
    def names(self) -> list[str]:
        return sorted(self._policies)

    def get(self, name: str) -> CompiledPolicy:
        """The policy called ``name``; 400 ``unknown_firewall`` naming it otherwise."""
        try:
            return self._policies[name]
        except KeyError:
            raise UnknownFirewall(
                f"unknown firewall {name!r} (known: {', '.join(self.names)})", param="firewall"
            ) from None
