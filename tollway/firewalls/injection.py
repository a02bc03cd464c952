"""Prompt-injection heuristics: instruction-override phrases, configurable.

The defaults catch the common override forms ("ignore all previous
instructions", "disregard the system prompt", "you are now DAN", "reveal your
system prompt"…). A policy can add literal phrases and regexes, or drop the
defaults. Matching is case-insensitive with flexible whitespace.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from tollway.firewalls.detector import Detector, DetectorSpec

__all__ = ["DEFAULT_PATTERNS", "InjectionParams", "SPECS", "phrase_pattern", "prompt_injection"]

_S = r"\s{1,4}"
_OPT = rf"(?:(?:all|any|of|the|your|my|these|those|previous|prior|above|earlier){_S}){{0,3}}"
_RULES = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context|messages)"

DEFAULT_PATTERNS: tuple[str, ...] = (
    rf"(?:ignore|disregard|forget|override|bypass|skip){_S}{_OPT}"
    rf"(?:previous|prior|above|earlier|preceding|system|initial|original|safety){_S}{_RULES}",
    rf"(?:ignore|disregard|forget){_S}(?:everything|all){_S}(?:you|that|above|before)",
    rf"(?:reveal|print|show|repeat|output|leak){_S}(?:me{_S})?(?:your|the){_S}"
    rf"(?:system|hidden|initial|original){_S}(?:prompt|instructions)",
    rf"you{_S}are{_S}now{_S}(?:DAN|in{_S}developer{_S}mode|jailbroken|unrestricted)",
    rf"do{_S}anything{_S}now",
    rf"new{_S}(?:system{_S})?instructions(?:{_S})?:",
)


def phrase_pattern(phrase: str) -> str:
    """A literal phrase as a pattern: words escaped, any whitespace run between them."""
    return _S.join(re.escape(w) for w in phrase.split())


class InjectionParams(BaseModel):
    """Parameters of the prompt injection detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    defaults: bool = Field(True, description="include the built-in override patterns")
    phrases: list[str] = Field(default_factory=list, description="extra literal phrases")
    patterns: list[str] = Field(default_factory=list, description="extra bounded regexes")


def prompt_injection(params: InjectionParams) -> Detector:
    """Instruction-override phrases, case-insensitive, whole words."""
    parts = list(DEFAULT_PATTERNS if params.defaults else ())
    parts += [phrase_pattern(p) for p in params.phrases if p.strip()]
    parts += params.patterns
    if not parts:
        raise ValueError("prompt_injection needs at least one phrase or pattern")
    body = "|".join(f"(?:{p})" for p in parts)
    return Detector("prompt_injection", rf"(?<!\w)(?i:{body})(?!\w)")


SPECS = [
    DetectorSpec("prompt_injection", "injection", "instruction-override phrases",
                 prompt_injection, InjectionParams),
]
