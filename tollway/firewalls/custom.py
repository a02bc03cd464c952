"""Custom detectors from the config: literal terms and bounded regexes.

A policy may list several, keyed ``custom`` or ``custom:<label>``; the label
names the verdicts and the redaction tag (``[REDACTED:<label>]``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from tollway.firewalls.detector import Detector, DetectorSpec

__all__ = ["CustomParams", "SPECS", "custom"]

_INLINE_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")
_FORBIDDEN = re.compile(r"\\[1-9]|\(\?P[<=]|\(\?<[A-Za-z]|\(\?P>|\\[AZz]|(?<!\\)\$")


class CustomParams(BaseModel):
    """Parameters of a custom detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: str = Field("custom", pattern=r"^[a-z0-9_]{1,40}$", description="verdict/redaction name")
    terms: list[str] = Field(default_factory=list, description="literal terms")
    regexes: list[str] = Field(default_factory=list, description="bounded regexes")
    case_sensitive: bool = Field(False, description="match terms and regexes case-sensitively")
    whole_words: bool = Field(True, description="terms only match as whole words")


def _check(pattern: str) -> str:
    if _INLINE_FLAGS.search(pattern):
        raise ValueError(f"regex {pattern!r}: use case_sensitive instead of inline flags")
    if _FORBIDDEN.search(pattern):
        raise ValueError(
            f"regex {pattern!r}: named groups, backreferences and end anchors are not supported"
        )
    return pattern


def custom(params: CustomParams) -> Detector:
    """Terms and regexes from the config, combined into one detector."""
    parts = []
    for term in params.terms:
        if not term.strip():
            continue
        p = re.escape(term)
        parts.append(rf"(?<!\w){p}(?!\w)" if params.whole_words else p)
    parts += [_check(r) for r in params.regexes]
    if not parts:
        raise ValueError(f"custom detector {params.label!r} needs terms or regexes")
    body = "|".join(f"(?:{p})" for p in parts)
    return Detector(params.label, body if params.case_sensitive else f"(?i:{body})")


SPECS = [DetectorSpec("custom", "custom", "terms and regexes from the config", custom,
                      CustomParams)]
