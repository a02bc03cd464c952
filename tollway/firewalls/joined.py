"""Findings in text fields read one after another as one text.

An upstream reads a request's text fields in order, so a secret split over two
fields (two text parts, two messages, a description and the next) is one secret
to it. The fields are therefore scanned as one joined text by one incremental
reading: its decisions depend on the text alone (see ``scanner.py``), so any
split of a text over fields finds exactly what the unsplit text finds.

Joining must not hide what a field holds on its own: ``"Hi"`` in the field before
a card number would glue to it and fail the number's word-start test, and a digit
in the field after would make it too long. So every field edge is also read as
an edge of the text:

- at a field's start a second reading begins there, with the text before it cut
  off. It only decides the positions a look-behind could see the cut from
  (``Scanner.reach``: the first one for the built-in detectors, at most
  ``LOOKAROUND``); beyond them the joined reading sees the same. It is skipped when
  no rule can tell the previous character from the start of the text
  (``Scanner.blind``: a space, ``?``… for the built-in detectors);
- at a field's end every open reading is also finished on a copy, as if the text
  ended there: what it still held back is decided with nothing after it.

Every finding of every reading is kept, so a split can only add findings to those
of the unsplit text: the ones of readings that cut at the edges it creates (a field
holding ``"2024-01-15 4"`` reads, alone, as ending in a phone number). None is
dropped for another (dropping a field's own reading for a joined match across its
edge would let the rest of that field's secret through), with one exception that
leaves every character covered: a match running on across an edge gives way to
findings of the same rule that cover it edge to edge (``"bob@x.net"`` then
``"ann@y.com"`` are two addresses). Callers merge overlapping findings.

Text cut into so many fields around open candidates that reading every edge would
cost far more than one scan raises ``TooFragmented`` (``work_budget``).

**The same history, read again.** A chat client sends the whole conversation with
every turn, so without help each request re-reads every earlier message: a
conversation's scanning grows with the square of its length, on the event loop (tens
of ms a request for a long one). What the readings hold after a field depends on the
fields up to it alone, so ``find`` can keep that state (``Checkpoints``) at chosen
field edges (``Resume.marks``: where the body's top-level field changes, and before its
last field) under a digest of everything read up to there (BLAKE2b over the fields,
each with its length, after a scope such as the account: one tenant's requests never
resume from another's), and a later request whose fields start the same resumes from
the furthest such edge it shares. It finds exactly what reading from the start finds,
the work budget included (the work a state had spent is kept with it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from tollway.firewalls.detector import LOOKAROUND
from tollway.firewalls.scanner import Scanner

__all__ = ["Checkpoints", "Finding", "Resume", "TooFragmented", "find", "work_budget"]

Finding = tuple[int, int, int, int, int]
"""``(start, end, rule, left, right)``: a span of the joined text, the index of the rule
in ``Scanner.rules``, and the field edges the reading that found it read as the text's
start and end (-1: none, the joined text went on)."""


class TooFragmented(Exception):
    """Reading every field edge would cost more than the work budget allows."""


def work_budget(texts: Sequence[str]) -> tuple[int, int]:
    """What ``find`` may spend on ``texts`` beyond one scan of their characters: extra
    decisions (edge readings, readings finished at a field end) and characters those
    and the joined reading look at again. A few per field and per character: ordinary
    requests stay far below; text cut into thousands of tiny fields around long open
    candidates does not, and is refused in time proportional to its size."""
    return 4 * len(texts) + 4096, 4 * sum(map(len, texts)) + 131072


class _Reading:
    """Leftmost, non-overlapping decisions over the joined text from ``base`` on.

    ``buf`` holds the text from ``base`` to what has been read; ``pos`` is the first
    undecided position in it. A reading with a ``stop`` decides positions before
    ``stop`` (absolute) only; ``cut`` is the field start it reads as the text's start
    (-1: none).
    """

    __slots__ = ("base", "buf", "cut", "pos", "stop")

    def __init__(self, base: int, stop: int | None, cut: int) -> None:
        self.base = base
        self.buf = ""
        self.pos = 0
        self.stop = stop
        self.cut = cut

    def copy(self) -> _Reading:
        other = _Reading(self.base, self.stop, self.cut)
        other.buf, other.pos = self.buf, self.pos
        return other


def _decide(sc: Scanner, r: _Reading, eof: bool, end: int, out: list[Finding]) -> bool:
    """Decide what ``r`` can decide now (``end``: the field end it is finished at, or -1),
    adding findings to ``out``; True when it has nothing left to decide."""
    buf, base, scan, cut = r.buf, r.base, r.pos, r.cut
    stop = None if r.stop is None else r.stop - base
    while True:
        if stop is None:
            p, m = sc._next(buf, scan, eof)
        else:
            p, m = sc._next_before(buf, scan, stop, eof)
        if m is None:
            break
        hit = sc._resolve(buf, m)
        if hit is None:
            scan = p + 1
            continue
        i, e = hit
        out.append((base + p, base + e, i, cut, end))
        scan = e
    keep = p - LOOKAROUND if p > LOOKAROUND else 0
    r.buf, r.base, r.pos = buf[keep:], base + keep, p - keep
    return stop is not None and p >= stop


@dataclass(frozen=True, slots=True)
class _State:
    """What ``find`` holds after a field (not the last), to go on from there."""

    field: int  # the index of that field
    joined: _Reading
    edges: tuple[_Reading, ...]
    starts: frozenset[int]
    at: int
    prev: str
    out: tuple[Finding, ...]
    spent: tuple[int, int]  # of the work budget: decisions, characters read again

    @property
    def size(self) -> int:
        """About how many bytes it holds (its buffers, field edges and findings), for the
        bound of ``Checkpoints``."""
        chars = len(self.joined.buf) + sum(len(r.buf) for r in self.edges)
        return 4 * chars + 64 * len(self.starts) + 160 * len(self.out) + 256


class Checkpoints:
    """States of ``find`` at field edges of earlier requests, by digest of what was read up
    to there; at most ``entries`` of them and about ``size`` bytes in all, the least
    recently used dropped first. One per policy (its scanner's states)."""

    def __init__(self, entries: int = 512, size: int = 8 << 20) -> None:
        self._states: OrderedDict[bytes, _State] = OrderedDict()
        self._entries, self._size, self._held = entries, size, 0
        self._lock = threading.Lock()
        self._fields: dict[int, int] = {}  # field index -> states kept after it
        self.resumed = 0  # requests that went on from a state (for tests and stats)
        self.skipped = 0  # characters those requests did not read again

    def __len__(self) -> int:
        return len(self._states)

    def fields(self) -> set[int]:
        """The field indices some kept state follows (only there is a lookup worth it)."""
        with self._lock:
            return set(self._fields)

    def get(self, key: bytes) -> _State | None:
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
            return state

    def put(self, key: bytes, state: _State) -> None:
        size = state.size
        if size > self._size // 8:  # one state may not crowd out the rest
            return
        with self._lock:
            old = self._states.pop(key, None)
            if old is not None:
                self._forget(old)
            self._states[key] = state
            self._held += size
            self._fields[state.field] = self._fields.get(state.field, 0) + 1
            while len(self._states) > self._entries or self._held > self._size:
                _, dropped = self._states.popitem(last=False)
                self._forget(dropped)

    def _forget(self, state: _State) -> None:
        self._held -= state.size
        left = self._fields[state.field] - 1
        if left:
            self._fields[state.field] = left
        else:
            del self._fields[state.field]


@dataclass(frozen=True, slots=True)
class Resume:
    """Where ``find`` keeps and looks up states: ``checkpoints``; ``scope`` (e.g. the
    account) keys them apart; a state is kept after each field index in ``marks``."""

    checkpoints: Checkpoints
    scope: str
    marks: Collection[int]


def _digests(
    scope: str, texts: Sequence[str], last: int, wanted: Collection[int]
) -> dict[int, bytes]:
    """The digest of what is read up to and including field ``k``, for each ``k`` in
    ``wanted`` before ``last`` whose field is not empty (no state is kept or looked up
    after an empty one)."""
    h = hashlib.blake2b(scope.encode("utf-8", "surrogatepass"), digest_size=16)
    out: dict[int, bytes] = {}
    for k in range(min(last, max(wanted, default=-1) + 1)):
        text = texts[k]
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        if text and k in wanted:
            out[k] = h.copy().digest()
    return out


def find(
    scanner: Scanner, texts: Sequence[str], budget: tuple[int, int] | None = None,
    resume: Resume | None = None,
) -> list[Finding]:
    """Every finding in ``texts`` read in order as one text; positions are offsets into
    ``"".join(texts)``, sorted, each once (a span found by several readings: with the
    fewest cuts). Raises ``TooFragmented`` past ``budget`` (see
    ``work_budget``, the default). With ``resume``, goes on from the state an earlier
    call kept after the longest run of the same first fields, and keeps its own (see
    the top)."""
    out: list[Finding] = []
    joined = _Reading(0, None, -1)
    if len(texts) == 1:  # one field: one reading (non-overlapping, in order)
        text = texts[0]
        short = len(text) <= scanner.known_len  # read again and again: remembered
        if short:
            known = scanner.known(text)
            if known is not None:
                return list(known)
        joined.buf = text
        _decide(scanner, joined, True, -1, out)
        if short:
            scanner.remember(text, out)
        return out
    decisions, again = total = work_budget(texts) if budget is None else budget
    edges: list[_Reading] = []
    starts: set[int] = set()  # the field edges
    at = 0
    prev, blind, reach, can_start = "", scanner.blind, scanner.reach, scanner.can_start
    last = max((k for k, t in enumerate(texts) if t), default=-1)  # read with the end
    first = 0
    keys: dict[int, bytes] = {}
    if resume is not None and last > 0:
        kept = resume.checkpoints.fields()
        keys = _digests(resume.scope, texts, last, kept | set(resume.marks))
        for k in sorted(kept.intersection(keys), reverse=True):
            state = resume.checkpoints.get(keys[k])
            if state is not None and state.field == k:
                resume.checkpoints.resumed += 1
                resume.checkpoints.skipped += state.at
                first, joined, at, prev = k + 1, state.joined.copy(), state.at, state.prev
                edges = [r.copy() for r in state.edges]
                starts = set(state.starts)
                out = list(state.out)
                decisions, again = total[0] - state.spent[0], total[1] - state.spent[1]
                if decisions < 0 or again < 0:  # reading from the start stops by then
                    raise TooFragmented  # (what was spent only grows)
                break
    for k in range(first, len(texts)):
        text = texts[k]
        if not text:
            continue
        starts.add(at)
        if at and prev not in blind and can_start(text[0]):  # else the joined reading
            edges.append(_Reading(at, at + reach, at))  # sees what a cut one would
        prev = text[-1]
        at += len(text)
        eof = k == last
        again -= len(joined.buf) - joined.pos
        joined.buf += text
        _decide(scanner, joined, eof, -1, out)
        live = []
        for r in edges:
            again -= len(r.buf) - r.pos
            r.buf += text
            if not _decide(scanner, r, eof, -1, out):
                live.append(r)
        decisions -= len(edges)
        edges = live
        if eof:
            break
        for r in (joined, *edges):  # the field ends here: also read it as the end
            if r.pos < len(r.buf):
                decisions -= 1
                again -= len(r.buf) - r.pos
                _decide(scanner, r.copy(), True, at, out)
        if decisions < 0 or again < 0:
            raise TooFragmented
        if resume is not None and (key := keys.get(k)) is not None and k in resume.marks:
            resume.checkpoints.put(key, _State(
                k, joined.copy(), tuple(r.copy() for r in edges), frozenset(starts), at,
                prev, tuple(out), (total[0] - decisions, total[1] - again),
            ))  # fmt: skip
    return _once(out, starts)


def _once(out: list[Finding], edges: set[int]) -> list[Finding]:
    """Each span and rule once, from the reading with the fewest cuts; sorted. A finding
    across field edges that findings of the same rule cover, one after another from
    edge to edge, gives way to them (``"bob@x.net"`` then ``"ann@y.com"``: two
    addresses, not ``"bob@x.netann"``); what it covered stays covered."""
    best: dict[tuple[int, int, int], Finding] = {}
    for f in out:
        key = f[:3]
        old = best.get(key)
        if old is None or (f[3] >= 0) + (f[4] >= 0) < (old[3] >= 0) + (old[4] >= 0):
            best[key] = f
    if len(best) > 1:
        ends: dict[tuple[int, int], list[int]] = {}  # (rule, start) -> ends
        for s, e, i in best:
            ends.setdefault((i, s), []).append(e)
        for s, e, i in list(best):
            if _tiled(s, e, i, ends, edges):
                del best[(s, e, i)]
    return sorted(best.values())


def _tiled(
    s: int, e: int, rule: int, ends: dict[tuple[int, int], list[int]], edges: set[int]
) -> bool:
    """Do other findings of ``rule`` cover ``[s, e)`` from ``s`` on, one after another,
    meeting at field edges? (Each of them is covered in turn, or stays: the characters
    stay covered.)"""
    stack, seen = [s], {s}
    while stack:
        at = stack.pop()
        for x in ends.get((rule, at), ()):
            if (at, x) == (s, e):
                continue
            if x >= e:
                return at > s
            if x in edges and x not in seen:
                seen.add(x)
                stack.append(x)
    return False
