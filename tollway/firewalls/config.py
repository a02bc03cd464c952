"""Firewall policy configuration: named policies, their detectors and scope.

The lead's ``Settings`` gains one field::

    firewalls: dict[str, PolicyConfig] = Field(default_factory=dict, description=...)

Built-in presets (``strict-block``, ``redact-pii``, ``monitor``) are always
available; a configured policy of the same name replaces the preset. A detector
key is a detector name (``email``), a group (``pii``, ``secrets``, ``injection``:
explicit names override their group), or ``custom:<label>``. Validation builds
every detector, so a bad regex or parameter fails at start-up, not per request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollway.firewalls.registry import GROUPS, spec_for
from tollway.firewalls.scanner import Action

__all__ = [
    "DetectorRule",
    "FirewallsConfig",
    "PRESETS",
    "PolicyConfig",
    "ResponseScope",
    "Where",
]

Where = Literal["request", "response", "both"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorRule(_Strict):
    """The action for one detector (or group) and its parameters."""

    action: Action = Field(description="block, redact or monitor")
    params: dict[str, Any] = Field(default_factory=dict, description="the detector's parameters")


class ResponseScope(_Strict):
    """Which parts of a response the policy inspects."""

    content: bool = Field(True, description="message content and refusals")
    reasoning: bool = Field(True, description="reasoning_content")
    tool_arguments: bool = Field(True, description="tool call arguments")


class PolicyConfig(_Strict):
    """A named firewall policy."""

    description: str = ""
    detectors: dict[str, Action | DetectorRule] = Field(
        min_length=1, description="detector, group or custom:<label> -> action or rule"
    )
    where: Where = Field("both", description="request, response or both")
    response: ResponseScope = Field(default_factory=lambda: ResponseScope.model_validate({}))
    hold_back_chars: int = Field(
        4096, ge=64, le=65536,
        description="most characters a response stream may hold back; every enabled "
        "detector's widest match must fit",
    )

    def rules(self) -> dict[str, DetectorRule]:
        """Detector key -> rule, with groups expanded (explicit keys win)."""
        out: dict[str, DetectorRule] = {}
        explicit: dict[str, DetectorRule] = {}
        for key, value in self.detectors.items():
            rule = value if isinstance(value, DetectorRule) else DetectorRule(action=value)
            if key in GROUPS:
                for name in GROUPS[key]:
                    out.setdefault(name, rule)
            else:
                explicit[key] = rule
        out.update(explicit)
        return out

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        for key, rule in self.rules().items():
            try:
                spec = spec_for(key)
            except KeyError:
                known = ", ".join(sorted({*GROUPS, *(n for g in GROUPS.values() for n in g)}))
                raise ValueError(
                    f"detectors.{key}: unknown detector (known: {known}, custom:<label>)"
                ) from None
            params = dict(rule.params)
            if spec.name == "custom" and ":" in key:
                params.setdefault("label", key.partition(":")[2])
            try:
                det = spec.create(params)
            except ValueError as exc:
                raise ValueError(f"detectors.{key}: {exc}") from None
            if det.width > self.hold_back_chars:
                raise ValueError(
                    f"detectors.{key}: a match can span {det.width} characters, more than "
                    f"hold_back_chars={self.hold_back_chars}; raise it or bound the detector"
                )
        return self


FirewallsConfig = dict[str, PolicyConfig]
"""What ``Settings.firewalls`` holds: policy name -> policy."""

PRESETS: dict[str, PolicyConfig] = {
    "strict-block": PolicyConfig.model_validate({
        "description": "block PII, secrets and prompt injection, both ways",
        "detectors": {"pii": "block", "secrets": "block", "injection": "block"},
    }),
    "redact-pii": PolicyConfig.model_validate({
        "description": "redact PII both ways", "detectors": {"pii": "redact"},
    }),
    "monitor": PolicyConfig.model_validate({
        "description": "record PII, secrets and prompt injection; change nothing",
        "detectors": {"pii": "monitor", "secrets": "monitor", "injection": "monitor"},
    }),
}
