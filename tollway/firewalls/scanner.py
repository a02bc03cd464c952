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
character are tried (patterns compiled per bucket, cached). Each piece is one
pass over the gated positions from the first held one: a position is either
undecided (stop: hold from here) or decided, then checked for a complete
candidate. A partial probe costs ~0.6 µs per rule even when it fails at once, so
on ASCII text a rule's probe is only asked where its ``prefix.open_tail`` test
(std ``re``, ~0.1 µs) says the rule could still be open at the end: "tok " cannot
start an e-mail address. The tests only ever say "maybe" where the probe could say
yes, so what is held is exactly what the probe alone would hold. Without the gate
(e.g. a custom regex that can start mid-word) the scanner searches the combined
pattern at every position: same results, slower.

Where a rule matches completely, the ``regex`` module's match costs ~1.8 µs per gated
position against std ``re``'s ~0.6 µs for the same combined pattern. With ``re.ASCII``
the two engines agree on ASCII text (without it ``re``'s ``\\s`` also takes
``\\x1c``–``\\x1f``, which ``regex``'s does not). Whether a bucket matches at ``p``
depends only on the text from ``p - LOOKAROUND`` to ``p`` + the bucket's widest rule, so
where that span is ASCII (on a short text: where the whole text is), the complete match
runs on a std ``re`` twin of the bucket's pattern; the twin exists only where every
pattern of the bucket is ASCII and ``re`` takes it without a warning (``_std_twin``).
The partial probes stay on ``regex`` (``re`` has no partial match). And a rule whose
every match holds a literal (``"@"`` in an address, ``"Q~"``, ``".eyJ"``,
``"-----BEGIN "``: ``starts.required_literal``) is not tried at all where the rest of the
text lacks it, on text of 48 characters or more (``_next_long``): a request's text, not a
streamed piece.

A streamed piece usually ends inside a word some rule may start (an address's local
part, a key), and the partial probe that says so costs ≈ 3–4 µs. On ASCII text its
answer depends only on the text from ``reach`` characters before the position to the
end, so each bucket remembers it under that string (``_Bucket.remember``: tails of up to
``_MEMO_TAIL`` characters, ``_MEMO_SIZE`` answers a bucket, shared by every stream of the
policy): the same word at the end of a piece, in this stream or any other, is then a
dictionary lookup.
"""

from __future__ import annotations

import re
import warnings
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import regex  # type: ignore[import-untyped]

from tollway.firewalls.detector import LOOKAROUND, Detector
from tollway.firewalls.prefix import open_tail
from tollway.firewalls.starts import blind_before, first_chars, required_literal, word_start

__all__ = ["Action", "Rule", "ScanResult", "Scanner", "StreamFilter"]

Action = Literal["block", "redact", "monitor"]
_LITERAL_RULES = 4  # at most this many rules are skipped by their literal: 2**4 tables
# characters a whole reading that keeps nothing (``StreamFilter``) gathers before it
# decides what it can
_WHOLE_BATCH = 16384
_LITERAL_TEXT = 48  # on text shorter than this (a streamed piece) neither shortcut is taken:
# they cost ≈ 0.2 µs a call, more than they save there

_GATE = re.compile(r"(?<![A-Za-z0-9])\S|[^A-Za-z0-9\s]")
_SPACE = frozenset(" \t\n\r\x0b\x0c")
_ALL_ASCII = frozenset(map(chr, range(128)))
_UNKNOWN = -(1 << 62)
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
"""What a std twin may not see."""
_MISSING = object()
# a streamed piece ends in a word that some rule may start (an address, a key): whether
# one may still be open there is asked again for the same few characters, piece after
# piece, stream after stream; the answer is remembered where the text from the position
# on is this short (a word or two), up to _MEMO_SIZE answers a bucket
_MEMO_TAIL = 24
_MEMO_SIZE = 1024
# a request's short text fields (a model's or tool's name, a short message, an id) come
# back request after request: the findings of such a text read alone are remembered, for
# texts up to _KNOWN_LEN characters, up to _KNOWN_SIZE texts a scanner
_KNOWN_LEN = 64
_KNOWN_SIZE = 1024


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

    __slots__ = ("rules", "window", "blind", "reach", "_full", "_probe", "_tags", "_block",
                 "_redact", "_gate", "_firsts", "_tails", "_probes", "_buckets", "_by_set",
                 "_literals", "_completes", "_seen", "_reaches", "_known")

    _memo_tail = _MEMO_TAIL
    """``open``'s answers are remembered (``_Bucket.remember``) where the text from the
    position to its end is at most this long."""
    known_len = _KNOWN_LEN
    """The findings of a text read alone are remembered (``known``) up to this length."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules:
            raise ValueError("a scanner needs at least one rule")
        self.rules = tuple(rules)
        self.window = max(r.detector.width for r in self.rules)
        self._known: dict[str, tuple[Any, ...]] = {}
        self._tags = tuple(f"[REDACTED:{r.detector.name}]" for r in self.rules)
        self._block = tuple(r.action == "block" for r in self.rules)
        self._redact = tuple(r.action == "redact" for r in self.rules)
        self._firsts = tuple(first_chars(r.detector.pattern) for r in self.rules)
        self._tails = tuple(open_tail(r.detector.pattern) for r in self.rules)
        # each rule's partial probe, compiled when a bucket first needs it
        self._probes: list[Any] = [None] * len(self.rules)
        gateable = all(
            f is not None and not (f & _SPACE) and word_start(r.detector.pattern)
            for r, f in zip(self.rules, self._firsts, strict=True)
        )
        self._gate: Any = _GATE if gateable else None
        # the combined pattern and its probe serve only a scanner without the gate (which
        # searches per-character buckets instead): ≈ 1 MiB not held by one with it
        self._full: Any = None
        self._probe: Any = None
        if not gateable:
            alts = [f"(?P<d{i}>{r.detector.pattern})" for i, r in enumerate(self.rules)]
            self._full = regex.compile("|".join(alts))
            probe = "|".join(f"(?:{r.detector.pattern})" for r in self.rules)
            self._probe = regex.compile(f"(?:{probe})(?!)")
        blinds = [blind_before(r.detector.pattern) for r in self.rules]
        self.blind = frozenset.intersection(*blinds)
        """ASCII characters no rule tells, just before a position, from the text's start."""
        self.reach = 1 if all(blinds) else LOOKAROUND
        """How far back from a position any rule may look (1: the character before)."""
        self._buckets: dict[str, _Bucket | None] = {}
        self._by_set: dict[frozenset[int], _Bucket] = {}
        """Every bucket built, by its rules: a character's, a reach's and a complete's
        bucket of the same rules are one object."""
        # of the rules with a required literal, those tried at the most characters for the
        # longest (an address at every word start, a private key's 3,900 characters)
        literals = [(i, lit) for i, r in enumerate(self.rules)
                    if (lit := required_literal(r.detector.pattern)) is not None
                    and (len(lit) > 1 or not lit.isalnum())]  # fmt: skip
        literals.sort(key=lambda il: -len(self._firsts[il[0]] or _ALL_ASCII)
                      * self.rules[il[0]].detector.width)
        self._literals = tuple((1 << i, lit) for i, lit in literals[:_LITERAL_RULES])
        """(bit of the rule, a string every match of the rule contains)."""
        self._completes: dict[int, dict[str, _Bucket | None]] = {}
        self._seen: tuple[str, list[tuple[int, int]]] | None = None  # see _absent
        self._reaches: dict[str, tuple[list[int], list[Any]]] = {}

    def _starters(self, ch: str) -> list[int]:
        """The rules that can start with ``ch`` (all of them for a non-ASCII character)."""
        return [i for i, f in enumerate(self._firsts) if f is None or ord(ch) > 127 or ch in f]

    def _bucket(self, ch: str) -> _Bucket | None:
        """The patterns of the rules that can start with ``ch``; None if no rule can."""
        got = self._buckets.get(ch, _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        got = self._of(frozenset(self._starters(ch)))
        if len(self._buckets) < 4096:
            self._buckets[ch] = got
        return got

    def _of(self, idx: frozenset[int]) -> _Bucket | None:
        """The one bucket of the rules ``idx``; None for no rule."""
        if not idx:
            return None
        got = self._by_set.get(idx)
        if got is None:
            got = self._by_set[idx] = _Bucket(self, sorted(idx))
        return got

    def _reach(self, ch: str) -> tuple[list[int], list[Any]]:
        """For the rules that can start with ``ch``: their distinct ``width``s, ascending,
        and for each the bucket of the rules at least that wide (then None), each compiled
        when first needed (``_reach_bucket``). A match at ``p`` reads at most ``width``
        characters on (look-ahead included), so where the text goes on ``d`` characters
        past ``p``, only the rules wider than ``d`` may still be open: bucket
        ``bisect_right(widths, d)``."""
        got = self._reaches.get(ch)
        if got is not None:
            return got
        widths = sorted({self.rules[i].detector.width for i in self._starters(ch)})
        got = (widths, [*([_MISSING] * len(widths)), None])
        if len(self._reaches) < 4096:
            self._reaches[ch] = got
        return got

    def _reach_bucket(self, ch: str, k: int) -> _Bucket:
        """Bucket ``k`` of ``_reach(ch)``: the rules that can start with ``ch`` and are at
        least as wide as its ``k``-th width."""
        widths, buckets = self._reach(ch)
        bucket = self._of(frozenset(
            i for i in self._starters(ch) if self.rules[i].detector.width >= widths[k]
        ))
        assert bucket is not None
        buckets[k] = bucket
        return bucket

    def _absent(self, buf: str, scan: int) -> int:
        """A bit for each rule whose required literal is not in ``buf[scan:]``: no match of
        it starts there (the literal lies within the match). Not asked of short text.

        A reading asks again after each candidate, further on in the same text: where each
        literal was found (or from where it was not) is kept for that text (a str is
        immutable), so it is searched for again only once a reading has passed it, or
        from further back."""
        seen = self._seen
        if seen is None or seen[0] is not buf:
            seen = self._seen = (buf, [(-1, -1)] * len(self._literals))
        found = seen[1]
        absent = 0
        for k, (bit, literal) in enumerate(self._literals):
            since, at = found[k]  # buf.find(literal, since) == at
            if not since <= scan <= at and not (at == -1 and 0 <= since <= scan):
                at = buf.find(literal, scan)
                found[k] = (scan, at)
            if at == -1:
                absent |= bit
        return absent

    def _complete(self, ch: str, absent: int) -> _Bucket | None:
        """The bucket of the rules that can start with ``ch``, but those ``absent``
        (``_absent``); None if no rule is left."""
        table = self._completes.get(absent)
        if table is None:
            table = self._completes[absent] = {}
        got = table.get(ch, _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        got = self._of(frozenset(i for i in self._starters(ch) if not absent >> i & 1))
        if len(table) < 4096:
            table[ch] = got
        return got

    def known(self, text: str) -> tuple[Any, ...] | None:
        """The findings remembered for ``text`` read alone (``remember``), or None."""
        return self._known.get(text)

    def remember(self, text: str, findings: Sequence[Any]) -> None:
        """Keep the findings of a short ``text`` read alone (``joined.find``: what its
        reading decides depends on the text and the rules alone). At most ``_KNOWN_SIZE``
        texts; when full it starts again. Kept in this process's memory only."""
        known = self._known
        if len(known) >= _KNOWN_SIZE:
            known.clear()
        known[text] = tuple(findings)

    def can_start(self, ch: str) -> bool:
        """Might a rule match starting with the character ``ch``?"""
        got = self._buckets.get(ch, _MISSING)
        return (self._bucket(ch) if got is _MISSING else got) is not None

    def _twin(self, pattern: str) -> Any:
        """``pattern``'s std ``re`` twin, or None (``_std_twin``)."""
        return _std_twin(pattern)

    def _next(self, buf: str, scan: int, eof: bool) -> tuple[int, Any]:
        """From ``scan`` on, whichever comes first: ``(p, None)`` for the leftmost position
        ``p`` some rule might still match given more text (``len(buf)`` if none, or at
        ``eof``), or ``(p, m)`` for the leftmost complete candidate ``m`` starting at ``p``.

        At a candidate start, a rule's exact (dear) partial probe runs only when the
        cheap ``open_tail`` test says the rule could still be open at the end, and only
        within ``window`` of the end: a match there, look-ahead included, is decided by
        the text already read. (``regex`` reports a partial match after a lazy repeat
        wherever the text ends, however far: without the bound a private key header
        would hold back everything after it.)
        """
        gate = self._gate
        if gate is None:
            q = len(buf)
            if not eof:
                near = max(scan, len(buf) - self.window + 1)
                if (u := self._probe.search(buf, near, partial=True)) is not None:
                    q = u.start()
            m = self._full.search(buf, scan)
            return (m.start(), m) if m is not None and m.start() < q else (q, None)
        if len(buf) - scan >= _LITERAL_TEXT:
            return self._next_long(buf, scan, len(buf), eof)
        buckets, search, ascii = self._buckets, gate.search, buf.isascii()
        n, reach, memo_tail = len(buf), self.reach, self._memo_tail
        settled = n - self.window  # positions up to here are decided
        while (g := search(buf, scan)) is not None:
            p = g.start()
            got: Any = buckets.get(buf[p], _MISSING)  # (no typing.cast: a call per candidate)
            b = self._bucket(buf[p]) if got is _MISSING else got
            if b is not None:
                if not eof and p > settled:
                    if ascii and n - p <= memo_tail and p >= reach:
                        # the answer depends on buf[p - reach:] alone: asked before?
                        key = buf[p - reach:]
                        is_open = b.memo.get(key)
                        if is_open is None:
                            is_open = b.remember(key, buf, p)
                    else:
                        is_open = b.open(buf, p, ascii)
                    if is_open:
                        return p, None
                m = (b.plain if ascii else b.full or b.compile()).match(buf, p)
                if m is not None:
                    return p, m
            scan = p + 1
        return len(buf), None

    def _next_before(self, buf: str, scan: int, stop: int, eof: bool) -> tuple[int, Any]:
        """``_next`` for candidate starts before ``stop`` only: ``(p, m)`` or ``(p, None)``
        as there, else ``(max(scan, min(stop, len(buf))), None)``. Kept apart so that the
        streaming path pays nothing for the bound."""
        end = min(stop, len(buf))
        if scan >= end:
            return max(scan, end), None
        gate = self._gate
        if gate is None:
            q = end
            if not eof:
                near = max(scan, len(buf) - self.window + 1)
                if (u := self._probe.search(buf, near, partial=True)) is not None:
                    q = min(q, u.start())
            m = self._full.search(buf, scan)
            return (m.start(), m) if m is not None and m.start() < q else (q, None)
        if len(buf) - scan >= _LITERAL_TEXT:
            return self._next_long(buf, scan, end, eof)
        buckets, search, ascii = self._buckets, gate.search, buf.isascii()
        settled = len(buf) - self.window
        while (g := search(buf, scan, end)) is not None:
            p = g.start()
            got: Any = buckets.get(buf[p], _MISSING)  # (no typing.cast: a call per candidate)
            b = self._bucket(buf[p]) if got is _MISSING else got
            if b is not None:
                if not eof and p > settled and b.open(buf, p, ascii):
                    return p, None
                m = (b.plain if ascii else b.full or b.compile()).match(buf, p)
                if m is not None:
                    return p, m
            scan = p + 1
        return end, None

    def _next_long(self, buf: str, scan: int, end: int, eof: bool) -> tuple[int, Any]:
        """The gated search of ``_next_before`` on text long enough for the shortcuts: the
        rules whose literal the text lacks are not tried, the complete match runs on the
        std twin where the text within the rules' reach is ASCII (see the top), and only
        the rules that reach the end of the text are asked whether they are still open
        (``_reach``: far from the end, only a private key or a JWT may be)."""
        assert self._gate is not None
        reaches, search, ascii, n = self._reaches, self._gate.search, buf.isascii(), len(buf)
        absent = self._absent(buf, scan)
        completes = self._completes.get(absent) or self._completes.setdefault(absent, {})
        odd = _UNKNOWN  # the first character a std twin may not see, found when needed
        settled = len(buf) - self.window
        while (g := search(buf, scan, end)) is not None:
            p = g.start()
            ch = buf[p]
            if not eof and p > settled:
                # only a rule whose match may reach the end of the text may be open
                reach: Any = reaches.get(ch)
                if reach is None:
                    reach = self._reach(ch)
                k = bisect_right(reach[0], n - p)
                b = reach[1][k]
                if b is _MISSING:
                    b = self._reach_bucket(ch, k)
                if b is not None and b.open(buf, p, ascii):
                    return p, None
            c: Any = completes.get(ch, _MISSING)
            if c is _MISSING:
                c = self._complete(ch, absent)
            if c is not None:
                if ascii:
                    m = c.plain.match(buf, p)
                else:  # nothing within the rules' reach that a std twin could tell apart?
                    if odd < p - LOOKAROUND:
                        odd = _odd_from(buf, p)
                    m = (c.plain if odd >= p + c.width else c.full or c.compile()).match(buf, p)
                if m is not None:
                    return p, m
            scan = p + 1
        return end, None

    def stream(self, whole: bool = False, keep: bool = True) -> StreamFilter:
        """A fresh incremental filter for one stream of text; ``whole``: for text no one
        reads before its end, ``keep`` False: nor after it (see ``StreamFilter``)."""
        return StreamFilter(self, whole, keep)

    def scan(self, text: str) -> ScanResult:
        """Scan a complete text: the non-streaming path (one piece, then the end)."""
        f = StreamFilter(self, whole=True)
        f.feed(text)
        out = f.flush()
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


def _odd_from(buf: str, p: int) -> int:
    """The first non-ASCII character at or after ``p - LOOKAROUND`` (``1 << 62``: none)."""
    m = _NOT_ASCII.search(buf, p - LOOKAROUND if p > LOOKAROUND else 0)
    return m.start() if m is not None else 1 << 62


def _std_twin(pattern: str) -> Any:
    """``pattern`` compiled by std ``re`` with ``re.ASCII``, for ASCII text: None unless
    the pattern is ASCII and ``re`` compiles it without a warning (``[[:alpha:]]`` is a
    POSIX class to ``regex`` and a set with a warning to ``re``). On such text the two
    engines match alike (``tests/firewalls/test_fast_paths.py`` holds the scanner to the
    same scanner on ``regex`` alone)."""
    if not pattern.isascii():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return re.compile(pattern, re.ASCII)
        except (re.error, Warning, RecursionError, OverflowError):
            return None


class _Bucket:
    """The rules of one set (those one character can start, or some of them) in priority
    order, each part compiled when first needed: a bucket that only reads whole text (a
    request's) compiles no partial probe, and one that only meets ASCII text compiles no
    ``regex`` pattern where it has a std twin (≈ 100–200 KiB each, per bucket).

    ``plain`` matches completely on ASCII text: the twin, or the ``regex`` pattern where
    there is none; ``full`` (the ``regex`` pattern, None
    until ``compile``) on any text; ``width`` is the widest rule's.
    """

    __slots__ = ("plain", "full", "width", "memo", "_sc", "_order", "_armed", "_probe")

    def __init__(self, sc: Scanner, order: list[int]) -> None:
        self._sc, self._order = sc, tuple(order)
        self.width = max(sc.rules[i].detector.width for i in order)
        self.full: Any = None
        twin = sc._twin(self._pattern())
        self.plain: Any = twin if twin is not None else self.compile()
        self._armed: tuple[tuple[Any, ...], Any, tuple[tuple[Any, Any], ...]] | None = None
        self._probe: Any = None
        self.memo: dict[str, bool] = {}
        """``open``'s answers on ASCII text near its end, by the text from ``reach`` before
        the position to the end (``remember``)."""

    def _pattern(self) -> str:
        rules = self._sc.rules
        return "|".join(f"(?P<d{i}>{rules[i].detector.pattern})" for i in self._order)

    def compile(self) -> Any:
        """The ``regex`` pattern of the rules, compiled on first use."""
        if self.full is None:
            self.full = regex.compile(self._pattern())
        return self.full

    def open(self, buf: str, p: int, ascii: bool) -> bool:
        """Might a rule of the bucket still match at ``p`` given more text (a partial match)?

        The answer is the exact probe's; on ASCII text each rule's probe is only asked when
        its ``open_tail`` test, far cheaper, allows a partial match at all.
        """
        if not ascii:  # the tests only hold for ASCII text
            probe = self._probe or self._combined_probe()
            return probe.match(buf, p, partial=True) is not None
        always, pretest, checks = self._armed or self._arm()
        for one in always:
            if one.match(buf, p, partial=True) is not None:
                return True
        if pretest is not None and pretest.match(buf, p) is not None:
            for test, one in checks:
                if test.match(buf, p) is not None and one.match(buf, p, partial=True) is not None:
                    return True
        return False

    def remember(self, key: str, buf: str, p: int) -> bool:
        """``open(buf, p, True)``, kept in ``memo`` under ``key``, ``buf[p - reach:]``: on
        ASCII text the answer depends on nothing else (no rule looks further back than the
        scanner's ``reach``, and a partial match reads on to the end of the text). ``memo``
        holds at most ``_MEMO_SIZE`` answers; when full it starts again."""
        is_open = self.open(buf, p, True)
        memo = self.memo
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = is_open
        return is_open

    def _arm(self) -> tuple[tuple[Any, ...], Any, tuple[tuple[Any, Any], ...]]:
        """For ASCII text: the exact partial probes of the rules without an ``open_tail``
        test, a test any of the others passes when it might be open (None if there are
        none), and their (test, probe) pairs. Each rule's probe is the scanner's, shared."""
        sc, order = self._sc, self._order
        probes = sc._probes
        for i in order:
            if probes[i] is None:
                probes[i] = regex.compile(f"(?:{sc.rules[i].detector.pattern})(?!)")
        always = tuple(probes[i] for i in order if sc._tails[i] is None)
        tested = [(t, probes[i]) for i in order if (t := sc._tails[i]) is not None]
        alts = "|".join(f"(?:{t})" for t in dict.fromkeys(t for t, _ in tested))
        pretest = re.compile(alts) if tested else None
        checks = tuple((re.compile(t), probe) for t, probe in tested)
        self._armed = (always, pretest, checks)
        return self._armed

    def _combined_probe(self) -> Any:
        """One exact partial probe of all the rules, for text that is not ASCII."""
        rules = self._sc.rules
        probe = "|".join(f"(?:{rules[i].detector.pattern})" for i in self._order)
        self._probe = regex.compile(f"(?:{probe})(?!)")
        return self._probe


class StreamFilter:
    """Incremental filter over one text stream; ``feed`` and ``flush`` return releasable text.

    ``whole``: the text is read only once it has ended (a response that is not streamed),
    so ``feed`` releases nothing and ``flush`` decides it all in one pass, which asks a rule
    whether it is still open at no part's end (those questions are most of a streamed
    piece's cost). What is released and found is the same either way (the decisions
    depend on the text alone). ``keep`` False: nobody reads the text at all (a policy that
    only counts); it is then decided ``_WHOLE_BATCH`` characters at a time, so a long
    stream holds no more than that, and nothing is released."""

    __slots__ = ("_sc", "_buf", "_pos", "_counts", "_whole", "_keep", "_parts", "_parted",
                 "blocked")

    def __init__(self, scanner: Scanner, whole: bool = False, keep: bool = True) -> None:
        self._sc = scanner
        self._buf = ""
        self._pos = 0
        self._counts = [0] * len(scanner.rules)
        self._whole = whole
        self._keep = keep
        self._parts: list[str] = []  # whole: what came since the last pass
        self._parted = 0  # ... its characters
        self.blocked: str | None = None

    @property
    def held(self) -> int:
        """Characters currently held back (undecided)."""
        return len(self._buf) - self._pos + self._parted

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
        if not self._whole:
            self._buf += text
            return self._advance(False)
        self._parts.append(text)
        self._parted += len(text)
        if not self._keep and self._parted >= _WHOLE_BATCH:
            self.settle()
        return ""

    def flush(self) -> str:
        """The text has ended: decide and release everything held."""
        if self.blocked is not None:
            return ""
        if not self._whole:
            return self._advance(True)
        self._join()
        out = self._advance(True)
        return out if self._keep else ""

    def settle(self) -> None:
        """Decide (and count) what a streamed reading would have decided of the text so
        far, without releasing it: for a reading cut short, or one nobody reads."""
        if self.blocked is None and self._whole:
            self._join()
            self._advance(False)

    def _join(self) -> None:
        if self._parts:
            self._buf += "".join(self._parts)
            self._parts.clear()
            self._parted = 0

    def _advance(self, eof: bool) -> str:
        """Decide, from the first held position on, everything that can be decided now."""
        buf, pos, sc = self._buf, self._pos, self._sc
        out: list[str] = []
        scan = pos
        while True:
            p, m = sc._next(buf, scan, eof)
            if m is None:
                break
            hit = sc._resolve(buf, m)
            if hit is None:
                scan = p + 1
                continue
            i, e = hit
            self._counts[i] += 1
            if sc._block[i]:
                out.append(buf[pos:p])
                self.blocked = sc.rules[i].detector.name
                self._buf, self._pos = "", 0
                return "".join(out)
            if sc._redact[i]:
                out.append(buf[pos:p])
                out.append(sc._tags[i])
                pos = e
            scan = e
        q = p  # the leftmost undecided position: everything before it is final
        if q == pos and not out:
            return ""
        keep = q - LOOKAROUND if q > LOOKAROUND else 0
        self._buf, self._pos = buf[keep:], q - keep
        if not out:
            return buf[pos:q]
        out.append(buf[pos:q])
        return "".join(out)
