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

Keeping it cheap: when every rule can only start at a word start or on a
symbol (``starts.word_start``), a std ``re`` gate skips all other positions,
and at a gated position only the rules whose first characters admit that
character are tried (patterns compiled per bucket, cached). Without the gate
(e.g. a custom regex that can start mid-word) the scanner searches the
combined pattern at every position: same results, slower.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import regex  # type: ignore[import-untyped]

from tollway.firewalls.detector import LOOKAROUND, Detector
from tollway.firewalls.starts import first_chars, word_start

__all__ = ["Action", "Rule", "ScanResult", "Scanner", "StreamFilter"]

Action = Literal["block", "redact", "monitor"]

_GATE = re.compile(r"(?<![A-Za-z0-9])\S|[^A-Za-z0-9\s]")
_SPACE = frozenset(" \t\n\r\x0b\x0c")
_MISSING = object()


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

    __slots__ = ("rules", "window", "_full", "_probe", "_tags", "_block", "_redact", "_gate",
                 "_firsts", "_buckets", "_by_set")

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
        self._firsts = tuple(first_chars(r.detector.pattern) for r in self.rules)
        gateable = all(
            f is not None and not (f & _SPACE) and word_start(r.detector.pattern)
            for r, f in zip(self.rules, self._firsts, strict=True)
        )
        self._gate: Any = _GATE if gateable else None
        self._buckets: dict[str, tuple[Any, Any] | None] = {}
        self._by_set: dict[frozenset[int], tuple[Any, Any] | None] = {}

    def _bucket(self, ch: str) -> tuple[Any, Any] | None:
        """(probe, full) patterns of the rules that can start with ``ch``; None if none."""
        got = self._buckets.get(ch, _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        idx = frozenset(
            i for i, f in enumerate(self._firsts) if f is None or ord(ch) > 127 or ch in f
        )
        if idx not in self._by_set:
            if not idx:
                self._by_set[idx] = None
            else:
                order = sorted(idx)
                pats = [self.rules[i].detector.pattern for i in order]
                probe = "|".join(f"(?:{p})" for p in pats)
                full = "|".join(f"(?P<d{i}>{p})" for i, p in zip(order, pats, strict=True))
                self._by_set[idx] = (regex.compile(f"(?:{probe})(?!)"), regex.compile(full))
        if len(self._buckets) < 4096:
            self._buckets[ch] = self._by_set[idx]
        return self._by_set[idx]

    def undecided(self, buf: str, start: int) -> int:
        """Leftmost position >= start where some rule might still match given more text."""
        gate = self._gate
        if gate is None:
            m = self._probe.search(buf, start, partial=True)
            return len(buf) if m is None else int(m.start())
        p = start
        while (g := gate.search(buf, p)) is not None:
            p = g.start()
            b = self._bucket(buf[p])
            if b is not None and b[0].match(buf, p, partial=True) is not None:
                return int(p)
            p += 1
        return len(buf)

    def next_match(self, buf: str, scan: int, end: int) -> Any:
        """The leftmost complete candidate starting in [scan, end), or None."""
        gate = self._gate
        if gate is None:
            m = self._full.search(buf, scan)
            return m if m is not None and m.start() < end else None
        while (g := gate.search(buf, scan, end)) is not None:
            p = g.start()
            b = self._bucket(buf[p])
            if b is not None and (m := b[1].match(buf, p)) is not None:
                return m
            scan = p + 1
        return None

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

    def _advance(self, eof: bool) -> str:
        buf, pos, sc = self._buf, self._pos, self._sc
        n = len(buf)
        q = n if eof else sc.undecided(buf, pos)
        if q == pos:
            return ""
        out: list[str] = []
        scan = pos
        while scan < q:
            m = sc.next_match(buf, scan, q)
            if m is None:
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
                q = n if eof else sc.undecided(buf, e)
        out.append(buf[pos:q])
        keep = max(0, q - LOOKAROUND)
        self._buf, self._pos = buf[keep:], q - keep
        return out[0] if len(out) == 1 else "".join(out)
