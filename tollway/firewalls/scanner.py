"""The incremental scanner: one pass over text that may arrive in pieces.

How a stream stays exact with a bounded hold-back
-------------------------------------------------
Every detector pattern is bounded, so whether a match starts at position ``p``
depends only on the text from ``p - LOOKAROUND`` to ``p + width``. After each
piece the scanner asks the combined pattern, with a never-matching ``(?!)``
appended, for a *partial* match (``regex`` module): the leftmost position ``q``
where some pattern path ran into the end of the text so far. Every position
before ``q`` is decided exactly as it would be with the whole text, so text
before ``q`` (after redaction) is released and only ``[q, end)`` is held.
Hence the hold-back never exceeds the widest enabled detector (``window``) and
is usually the last partial word. Decisions are leftmost, non-overlapping, in
detector priority order; a candidate a validator rejects frees its start
position only. Because every decision depends on the text alone, any split of
a text into pieces yields the same output as one piece: ``scan(text)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import regex

from tollway.firewalls.detector import LOOKAROUND, Detector

__all__ = ["Action", "Rule", "ScanResult", "Scanner", "StreamFilter"]

Action = Literal["block", "redact", "monitor"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A detector and what to do when it matches."""

    detector: Detector
    action: Action


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The outcome of scanning one complete text."""

    text: str
    blocked: str | None
    counts: dict[str, int]


class Scanner:
    """Compiled rules: the combined pattern, its probe and the hold-back window."""

    __slots__ = ("rules", "window", "_full", "_probe", "_tags", "_block", "_redact")

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules:
            raise ValueError("a scanner needs at least one rule")
        self.rules = tuple(rules)
        self.window = max(r.detector.width for r in self.rules)
        alts = [f"(?P<d{i}>{r.detector.pattern})" for i, r in enumerate(self.rules)]
        self._full: Any = regex.compile("|".join(alts))
        probe = "|".join(f"(?:{r.detector.pattern})" for r in self.rules)
        self._probe: Any = regex.compile(f"(?:{probe})(?!)")
        self._tags = tuple(f"[REDACTED:{r.detector.name}]" for r in self.rules)
        self._block = tuple(r.action == "block" for r in self.rules)
        self._redact = tuple(r.action == "redact" for r in self.rules)

    def stream(self) -> StreamFilter:
        """A fresh incremental filter for one stream of text."""
        return StreamFilter(self)

    def scan(self, text: str) -> ScanResult:
        """Scan a complete text: the non-streaming path (one piece, then the end)."""
        f = StreamFilter(self)
        out = f.feed(text) + f.flush()
        return ScanResult(out, f.blocked, f.found())

    def _resolve(self, buf: str, m: Any) -> tuple[int, int] | None:
        """The rule and end of the valid match at ``m.start()``, in priority order."""
        s = m.start()
        first = int(m.lastgroup[1:])
        for i in range(first, len(self.rules)):
            det = self.rules[i].detector
            mm = m if i == first else det.rx.match(buf, s)
            if mm is None:
                continue
            k = det.accept(mm.group())
            if k:
                return i, s + k
        return None


class StreamFilter:
    """Incremental filter over one text stream; ``feed`` and ``flush`` return releasable text."""

    __slots__ = ("_sc", "_buf", "_pos", "_counts", "blocked")

    def __init__(self, scanner: Scanner) -> None:
        self._sc = scanner
        self._buf = ""
        self._pos = 0
        self._counts = [0] * len(scanner.rules)
        self.blocked: str | None = None

    @property
    def held(self) -> int:
        """Characters currently held back."""
        return len(self._buf) - self._pos

    def found(self) -> dict[str, int]:
        """Matches so far per detector name (only those seen)."""
        out: dict[str, int] = {}
        for rule, n in zip(self._sc.rules, self._counts, strict=True):
            if n:
                out[rule.detector.name] = out.get(rule.detector.name, 0) + n
        return out

    def feed(self, text: str) -> str:
        """Add a piece of text; return what can be released now."""
        if self.blocked is not None:
            return ""
        self._buf += text
        return self._advance(False)

    def flush(self) -> str:
        """The text has ended: decide and release everything held."""
        if self.blocked is not None:
            return ""
        return self._advance(True)

    def _undecided(self, buf: str, start: int) -> int:
        m = self._sc._probe.search(buf, start, partial=True)
        return len(buf) if m is None else int(m.start())

    def _advance(self, eof: bool) -> str:
        buf, pos, sc = self._buf, self._pos, self._sc
        n = len(buf)
        q = n if eof else self._undecided(buf, pos)
        if q == pos:
            return ""
        out: list[str] = []
        scan = pos
        while scan < q:
            m = sc._full.search(buf, scan)
            if m is None or m.start() >= q:
                break
            s = m.start()
            hit = sc._resolve(buf, m)
            if hit is None:
                scan = s + 1
                continue
            i, e = hit
            self._counts[i] += 1
            if sc._block[i]:
                out.append(buf[pos:s])
                self.blocked = sc.rules[i].detector.name
                self._buf, self._pos = "", 0
                return "".join(out)
            if sc._redact[i]:
                out.append(buf[pos:s])
                out.append(sc._tags[i])
                pos = e
            scan = e
            if e > q:
                q = n if eof else self._undecided(buf, e)
        out.append(buf[pos:q])
        keep = max(0, q - LOOKAROUND)
        self._buf, self._pos = buf[keep:], q - keep
        return out[0] if len(out) == 1 else "".join(out)
