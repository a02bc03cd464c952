"""A cheap test for "could a match starting here still be open at the end of the text?".

The scanner asks the ``regex`` module for a *partial* match to learn whether a
position is undecided (some path of a pattern runs into the end of the text). A
partial probe costs ~0.6 µs per rule even when it fails at once, and most positions
it is asked about are plainly decided: "tok " cannot be the start of an e-mail
address. ``open_tail(p)`` builds a std ``re`` pattern (~0.1–0.3 µs a call) that
matches, anchored at a position and running through ``\\Z``, *at least* wherever
``p`` has a partial match there, for ASCII text. The scanner runs the exact probe
only where the test matches, so its decisions do not change.

The test, for ASCII text only (the scanner asks the exact probe for other text):

- **alphabet** ``[A]*+(?s:.){0,k}\\Z``: a path consumes characters of ``p``'s
  alphabet ``A`` and may look ``k`` characters ahead past them (lookaheads,
  ``\\b``). Quick to reject "a space after the word";
- **structure** ``P``, built from the parsed pattern with ``F(x)`` = ``x`` without
  lookaheads and anchors (a superset of ``x``'s strings):
  ``P(x1 … xk) = \\Z | Q(x1) | F(x1) P(x2 … xk)`` where ``Q(x)`` = the text ends
  inside ``x``. A lookahead's ``Q`` reads up to its width, then the end; a
  lookbehind reads backwards only and stays exact (the text is ASCII). Where the
  whole structure is too long to be cheap, only its first items along each path are
  modelled and anything may follow them (``P(…) = (?s:.)*\\Z`` from there on): still a
  superset, and still quick to reject text that cannot start a match;
- after a **lazy repeat** anything goes: ``regex`` reports a partial match wherever
  the text ends behind one (``ab[a-z]{0,9}?X`` on ``ab(``), and the scanner must
  hold exactly what it held before; so such a pattern has no alphabet test.

Every character class is written as the explicit set of ASCII characters that
``regex`` itself matches with it under the item's flags, so case folding and
Unicode classes need no modelling. ``None`` means "always run the exact probe" (a
construct this module does not model).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import regex  # type: ignore[import-untyped]

__all__ = ["ascii_class", "open_tail"]

_P: Any = re._parser  # type: ignore[attr-defined]
_C: Any = re._constants  # type: ignore[attr-defined]

_ASCII = [chr(i) for i in range(128)]
_FLAGS = re.IGNORECASE | re.DOTALL
_IGNORED = re.UNICODE | re.VERBOSE  # the parse tree already dropped verbose whitespace
_CATEGORIES = {
    _C.CATEGORY_DIGIT: r"\d", _C.CATEGORY_NOT_DIGIT: r"\D",
    _C.CATEGORY_WORD: r"\w", _C.CATEGORY_NOT_WORD: r"\W",
    _C.CATEGORY_SPACE: r"\s", _C.CATEGORY_NOT_SPACE: r"\S",
}
_GREEDY = (_C.MAX_REPEAT, _C.POSSESSIVE_REPEAT)
_REPEATS = (*_GREEDY, _C.MIN_REPEAT)
_END = r"\Z"
_ANYTHING = r"(?s:.)*\Z"
_STRUCTURE_LIMIT = 6000
"""Longest structural test kept: beyond it the test costs about what the probe does."""
_WHOLE_LIMIT = 400
"""Longest ``F(x)`` kept exact in a structure modelled in part (``_whole``)."""
_UNBOUNDED = 1 << 30
_STEPS = (_UNBOUNDED, 12, 8, 6, 4, 3, 2)
"""How many items along a path the structure models, tried in turn until it fits the
limit: a pattern too large to model whole (prompt injection's phrases) is still told
from most text by its first words."""


class _Unknown(Exception):
    """A construct this module does not model."""


def _char(code: int) -> str:
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _render(op: Any, av: Any) -> str | None:
    """A one-character item as ``regex`` source; None if ``op`` is not one."""
    if op is _C.LITERAL:
        return _char(av)
    if op is _C.NOT_LITERAL:
        return f"[^{_char(av)}]"
    if op is _C.ANY:
        return "."
    if op is not _C.IN:
        return None
    parts: list[str] = []
    for iop, iav in av:
        if iop is _C.NEGATE:
            parts.insert(0, "^")
        elif iop is _C.LITERAL:
            parts.append(_char(iav))
        elif iop is _C.RANGE:
            parts.append(f"{_char(iav[0])}-{_char(iav[1])}")
        elif iop is _C.CATEGORY and iav in _CATEGORIES:
            parts.append(_CATEGORIES[iav])
        else:
            raise _Unknown
    return "[" + "".join(parts) + "]"


@cache
def _ascii(item: str, flags: int) -> frozenset[str]:
    """The ASCII characters ``regex`` matches with the one-character ``item``."""
    on = "".join(c for f, c in ((re.IGNORECASE, "i"), (re.DOTALL, "s")) if flags & f)
    rx = regex.compile(f"(?{on}:{item})" if on else item, cache_pattern=False)  # one use
    return frozenset(c for c in _ASCII if rx.fullmatch(c))


def ascii_class(op: Any, av: Any, flags: int) -> frozenset[str] | None:
    """The ASCII characters the parsed one-character item ``(op, av)`` matches under
    ``flags``; None if it is not a one-character item this module models."""
    try:
        item = _render(op, av)
    except _Unknown:
        return None
    return None if item is None else _ascii(item, flags & _FLAGS)


def _class(chars: frozenset[str] | set[str]) -> str:
    """A compact std ``re`` pattern for one character of a set of ASCII characters."""
    if not chars:
        return "(?!)"

    def one(code: int) -> str:
        return chr(code) if chr(code).isalnum() else f"\\x{code:02x}"

    codes = sorted(ord(c) for c in chars)
    if len(codes) == 1:
        return one(codes[0])
    parts: list[str] = []
    start = prev = codes[0]
    for code in [*codes[1:], -1]:
        if code != prev + 1:
            parts.append(one(start) if start == prev else f"{one(start)}-{one(prev)}")
            start = code
        prev = code
    return "[" + "".join(parts) + "]"


def _flags(flags: int, av: Any) -> int:
    _, add, rm, _sub = av
    if (add | rm) & ~(_FLAGS | _IGNORED):
        raise _Unknown
    return int((flags | add) & ~rm)


def _walk(seq: Any, flags: int, alphabet: set[str]) -> int:
    """Add what ``seq`` consumes to ``alphabet``; how far it looks ahead past that."""
    ahead = 0
    for op, av in seq:
        item = _render(op, av)
        if item is not None:
            alphabet |= _ascii(item, flags & _FLAGS)
        elif op is _C.ASSERT or op is _C.ASSERT_NOT:
            if av[0] > 0:
                ahead = max(ahead, int(av[1].getwidth()[1]))
        elif op is _C.AT:
            ahead = max(ahead, 1)  # \b, \B, $ look at the next character
        elif op in _GREEDY:
            ahead = max(ahead, _walk(av[2], flags, alphabet))
        elif op is _C.SUBPATTERN:
            ahead = max(ahead, _walk(av[3], _flags(flags, av), alphabet))
        elif op is _C.ATOMIC_GROUP:
            ahead = max(ahead, _walk(av, flags, alphabet))
        elif op is _C.BRANCH:
            for alt in av[1]:
                ahead = max(ahead, _walk(alt, flags, alphabet))
        else:  # lazy repeats (see the module doc), group references, conditionals…
            raise _Unknown
    return ahead


def _count(lo: int, hi: int) -> str:
    return f"{{{lo},}}" if hi >= _C.MAXREPEAT else f"{{{lo},{hi}}}"


def _full(seq: Any, flags: int) -> str:
    """A superset of ``seq``'s strings: lookaheads and anchors dropped."""
    return "".join(_full_item(op, av, flags) for op, av in seq)


def _full_item(op: Any, av: Any, flags: int) -> str:
    item = _render(op, av)
    if item is not None:
        return _class(_ascii(item, flags & _FLAGS))
    if op is _C.ASSERT or op is _C.ASSERT_NOT:
        direction, sub = av
        lo, hi = sub.getwidth()
        if direction > 0 or lo != hi:
            return ""  # dropped: a superset
        body = _full(sub, flags)  # reads backwards only: exact on ASCII text
        return f"(?<={body})" if op is _C.ASSERT else f"(?<!{body})"
    if op is _C.AT:
        return ""
    if op in _REPEATS:
        lo, hi, sub = av
        return f"(?:{_full(sub, flags)}){_count(lo, hi)}"
    if op is _C.SUBPATTERN:
        return f"(?:{_full(av[3], _flags(flags, av))})"
    if op is _C.ATOMIC_GROUP:
        return f"(?:{_full(av, flags)})"
    if op is _C.BRANCH:
        return "(?:" + "|".join(dict.fromkeys(_full(alt, flags) for alt in av[1])) + ")"
    raise _Unknown


def _whole(op: Any, av: Any, flags: int, steps: int) -> str:
    """``_full_item``; in a structure modelled in part (``steps`` bounded) where that is
    long, a superset: as many characters of the item's alphabet as it is wide."""
    exact = _full_item(op, av, flags)
    if steps > _UNBOUNDED // 2 or len(exact) <= _WHOLE_LIMIT:
        return exact
    alphabet: set[str] = set()
    _walk([(op, av)], flags, alphabet)
    lo, hi = _P.SubPattern(None, [(op, av)]).getwidth()
    return f"{_class(alphabet)}{_count(lo, hi)}"


def _prefix(seq: Any, flags: int, steps: int, i: int = 0) -> str:
    """Texts that end (``\\Z``) while a path is inside ``seq[i:]``, modelled for ``steps``
    more items along the path (one-character items not counted); past them anything may
    follow (a superset: every text this returns ends at ``\\Z``, and so does
    ``_ANYTHING``)."""
    if i >= len(seq):
        return _END
    if steps <= 0:
        return _ANYTHING
    op, av = seq[i]
    if _render(op, av) is not None:  # one character: linear in size, so not counted
        return f"(?:{_END}|{_full_item(op, av, flags)}{_prefix(seq, flags, steps, i + 1)})"
    rest = _prefix(seq, flags, steps - 1, i + 1)
    return f"(?:{_inside(op, av, flags, steps)}|{_whole(op, av, flags, steps)}{rest})"


def _inside(op: Any, av: Any, flags: int, steps: int) -> str:
    """Texts that end while a path is inside the item ``(op, av)`` (or before it)."""
    if op is _C.ASSERT or op is _C.ASSERT_NOT:
        direction, sub = av
        return _END if direction < 0 else f"(?s:.){_count(0, sub.getwidth()[1])}{_END}"
    if op is _C.AT:
        return r"(?s:.)?\Z"
    if op is _C.MIN_REPEAT:
        return _ANYTHING
    if op in _GREEDY:
        lo, hi, sub = av
        if hi == 0:
            return _END
        if len(sub) == 1 and _render(sub[0][0], sub[0][1]) is not None:
            one = _full_item(sub[0][0], sub[0][1], flags)
            return f"{one}{_count(0, hi)}+{_END}"  # a run of up to hi, then the end
        whole = _whole(_C.SUBPATTERN, (None, 0, 0, sub), flags, steps)
        return f"(?:{whole}){_count(0, hi - 1)}{_prefix(sub, flags, steps)}"
    if op is _C.SUBPATTERN:
        return _prefix(av[3], _flags(flags, av), steps)
    if op is _C.ATOMIC_GROUP:
        return _prefix(av, flags, steps)
    if op is _C.BRANCH:
        # (alternatives cut to the same first items are one)
        return "(?:" + "|".join(dict.fromkeys(_prefix(alt, flags, steps) for alt in av[1])) + ")"
    raise _Unknown


@cache
def open_tail(pattern: str) -> str | None:
    """A std ``re`` pattern that matches, at a position of an ASCII text and through
    ``\\Z``, wherever ``pattern`` might have a partial match; None: always probe."""
    if "[[:" in pattern or "\\p" in pattern or "\\P" in pattern:
        return None  # syntax the ``regex`` module reads differently from ``re``
    try:
        parsed = _P.parse(pattern)
        flags = parsed.state.flags
        if flags & ~(_FLAGS | _IGNORED):
            return None
        for steps in _STEPS:  # the whole structure, else as much of its start as fits
            structure = _prefix(list(parsed), flags, steps)
            if len(structure) <= _STRUCTURE_LIMIT:
                break
        else:
            structure = _ANYTHING
    except (_Unknown, re.error, RecursionError):
        return None
    try:
        alphabet: set[str] = set()
        ahead = _walk(parsed, flags, alphabet)
    except _Unknown:  # a lazy repeat: the structure alone
        return None if structure == _ANYTHING else _checked(structure)
    tail = "" if not ahead else "(?s:.)*" if ahead >= _C.MAXREPEAT else f"(?s:.){{0,{ahead}}}"
    test = f"{_class(alphabet)}*+{tail}{_END}" if alphabet else f"{tail}{_END}"
    return _checked(test if structure == _ANYTHING else f"(?={test}){structure}")


def _checked(source: str | None) -> str | None:
    """``source`` if std ``re`` compiles it, else None."""
    if source is None:
        return None
    try:
        re.compile(source)
    except (re.error, RecursionError, OverflowError):
        return None
    return source
