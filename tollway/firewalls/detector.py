"""The detector type: a bounded regex plus an optional validator, and its spec.

A detector finds candidates with a regular expression whose every quantifier is
bounded, so a match spans at most ``width`` characters: that bound is what lets
the streaming scanner hold back a finite window. A validator (Luhn, IBAN mod-97,
phone metadata…) accepts a candidate, returning how many of its characters form
the match (0 rejects it), so a greedy candidate can shrink to its valid prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import regex  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict

__all__ = [
    "LOOKAROUND",
    "Category",
    "Detector",
    "DetectorSpec",
    "Match",
    "NoParams",
    "Validator",
    "pattern_width",
    "shrink_at",
]

Category = Literal["secrets", "pii", "custom", "injection"]
Validator = Callable[[str], int]

LOOKAROUND = 16
"""Characters a pattern may look ahead past its match or behind its start."""

_MAXREPEAT = 1 << 16


@dataclass(frozen=True, slots=True)
class Match:
    """One finding: a span of the scanned text and the detector's type."""

    start: int
    end: int
    type: str


def pattern_width(pattern: str) -> int:
    """The most characters a match of ``pattern`` can span; ValueError if unbounded."""
    try:
        lo, hi = re._parser.parse(pattern).getwidth()  # type: ignore[attr-defined]
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    if hi >= _MAXREPEAT:
        raise ValueError(
            f"pattern {pattern!r} is unbounded: use bounded quantifiers like {{1,64}} "
            "instead of + or *"
        )
    if lo == 0:
        raise ValueError(f"pattern {pattern!r} can match the empty string")
    return int(hi)


def shrink_at(candidate: str, ok: Callable[[str], bool], separators: str = " .-") -> int:
    """Length of the longest prefix of ``candidate``, cut at a separator, that ``ok`` accepts."""
    if ok(candidate):
        return len(candidate)
    for i in range(len(candidate) - 1, 0, -1):
        if candidate[i] in separators and candidate[i - 1] not in separators:
            if ok(candidate[:i]):
                return i
    return 0


@dataclass(frozen=True, slots=True)
class Detector:
    """A named, bounded pattern with an optional validator."""

    name: str
    pattern: str
    validate: Validator | None = None
    width: int = field(init=False)
    rx: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", pattern_width(self.pattern) + LOOKAROUND)
        object.__setattr__(self, "rx", regex.compile(self.pattern))

    def accept(self, candidate: str) -> int:
        """How many leading characters of a regex candidate form a valid match."""
        return len(candidate) if self.validate is None else self.validate(candidate)

    def find(self, text: str) -> list[Match]:
        """All non-overlapping valid matches in ``text``, leftmost first."""
        found: list[Match] = []
        i = 0
        while (m := self.rx.search(text, i)) is not None:
            s = m.start()
            k = self.accept(m.group())
            if k:
                found.append(Match(s, s + k, self.name))
                i = s + k
            else:
                i = s + 1
        return found


class NoParams(BaseModel):
    """Parameters of a detector that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """A registered detector kind: its declared parameters and how to build it."""

    name: str
    category: Category
    description: str
    build: Callable[[Any], Detector]
    params: type[BaseModel] = NoParams

    def create(self, params: Mapping[str, Any] | None = None) -> Detector:
        """Validate ``params`` against the declared model and build the detector."""
        return self.build(self.params.model_validate(dict(params or {})))

    @classmethod
    def fixed(cls, category: Category, detector: Detector, description: str) -> DetectorSpec:
        """A spec for a detector without parameters."""
        return cls(detector.name, category, description, lambda _p: detector)
