"""Where a pattern can start: first characters and word-start, from the parsed regex.

The scanner uses these to skip positions cheaply (see ``scanner.py``): a
pattern is *gateable* when every match starts either where the previous
character is not ASCII alphanumeric (a leading negative lookbehind covering
``[A-Za-z0-9]``) or on a character that is neither alphanumeric nor whitespace.
``first_chars`` over-approximates the set of ASCII characters a match can begin
with; ``None`` means "any character". ``blind_before`` under-approximates the
characters a pattern cannot tell, just before a position, from the start of the
text. ``required_literal`` finds a string every match contains (``"@"`` in an e-mail
address), so text without it cannot hold a match. All are conservative by construction.
"""

from __future__ import annotations

import re
import string
from typing import Any

__all__ = ["ALNUM", "blind_before", "first_chars", "required_literal", "word_start"]

_P: Any = re._parser  # type: ignore[attr-defined]
_C: Any = re._constants  # type: ignore[attr-defined]

ALNUM = frozenset(string.ascii_letters + string.digits)
_ASCII = [chr(i) for i in range(128)]
_SPACE = frozenset(string.whitespace)
_CATEGORY = {
    _C.CATEGORY_DIGIT: frozenset(string.digits),
    _C.CATEGORY_WORD: ALNUM | {"_"},
    _C.CATEGORY_SPACE: _SPACE,
}
_ZERO_WIDTH = (_C.AT, _C.ASSERT, _C.ASSERT_NOT)


def _class(items: list[Any]) -> frozenset[str] | None:
    """The ASCII characters an ``IN`` class accepts; None if negated or unbounded."""
    out: set[str] = set()
    for op, av in items:
        if op is _C.LITERAL:
            out.add(chr(av))
        elif op is _C.RANGE:
            out.update(chr(c) for c in range(av[0], min(av[1], 127) + 1))
        elif op is _C.CATEGORY and av in _CATEGORY:
            out |= _CATEGORY[av]
        else:
            return None
    return frozenset(out)


def _fold(chars: frozenset[str] | None, ignore_case: bool) -> frozenset[str] | None:
    if chars is None or not ignore_case:
        return chars
    return frozenset(c for ch in chars for c in (ch.lower(), ch.upper()))


def _nullable(item: tuple[Any, Any]) -> bool:
    op, av = item
    if op in _ZERO_WIDTH:
        return True
    if op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
        return av[0] == 0 or _seq_nullable(av[2])
    if op is _C.SUBPATTERN:
        return _seq_nullable(av[3])
    if op is _C.BRANCH:
        return any(_seq_nullable(alt) for alt in av[1])
    return False


def _seq_nullable(seq: Any) -> bool:
    return all(_nullable(it) for it in seq)


def _first(seq: Any, ic: bool) -> frozenset[str] | None:
    out: set[str] = set()
    for op, av in seq:
        if op in _ZERO_WIDTH:
            continue
        if op is _C.LITERAL:
            got: frozenset[str] | None = frozenset(chr(av)) if av < 128 else None
            got = _fold(got, ic)
        elif op is _C.IN:
            got = _fold(_class(av), ic)
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
            got = _first(av[2], ic)
        elif op is _C.SUBPATTERN:
            got = _first(av[3], ic or bool(av[1] & re.IGNORECASE))
        elif op is _C.BRANCH:
            parts = [_first(alt, ic) for alt in av[1]]
            got = None if any(p is None for p in parts) else frozenset().union(*parts)  # type: ignore[arg-type]
        else:
            return None
        if got is None:
            return None
        out |= got
        if not _nullable((op, av)):
            return frozenset(out)
    return None  # the whole pattern can be empty: no bound


def first_chars(pattern: str) -> frozenset[str] | None:
    """ASCII characters a match of ``pattern`` can start with; None if unknown/any."""
    return _first(_P.parse(pattern), False)


def _word_start(seq: Any, ic: bool) -> bool:
    if not seq:
        return False
    op, av = seq[0]
    if op is _C.ASSERT_NOT and av[0] == -1 and len(av[1]) == 1:
        (iop, iav), = list(av[1])
        cls = _class(iav) if iop is _C.IN else frozenset(chr(iav)) if iop is _C.LITERAL else None
        if cls is not None and ALNUM <= cls:
            return True
    if op is _C.SUBPATTERN and len(seq) == 1:
        return _word_start(av[3], ic or bool(av[1] & re.IGNORECASE))
    if op is _C.BRANCH and len(seq) == 1:
        return all(_word_start(alt, ic) for alt in av[1])
    first = _first(seq, ic)
    return first is not None and not (first & (ALNUM | _SPACE))


def word_start(pattern: str) -> bool:
    """True if every match starts after a non-alphanumeric or on a non-alnum, non-space char."""
    return _word_start(_P.parse(pattern), False)


def _blind(seq: Any, flags: int, leading: bool, out: set[str]) -> bool:
    """Remove from ``out`` what a leading look-behind of ``seq`` rejects; False if ``seq``
    looks back in any other way (a look-behind elsewhere, an anchor, ``\\b``…)."""
    from tollway.firewalls.prefix import ascii_class

    for n, (op, av) in enumerate(seq):
        first = leading and n == 0
        if op is _C.ASSERT_NOT and av[0] == -1:
            if not first or len(av[1]) != 1 or av[1].getwidth() != (1, 1):
                return False
            iop, iav = av[1][0]
            chars = ascii_class(iop, iav, flags)
            if chars is None:
                return False
            out -= chars
        elif op is _C.ASSERT:
            if av[0] == -1 or not _blind(av[1], flags, False, out):
                return False
        elif op is _C.ASSERT_NOT or op is _C.AT:
            if op is _C.AT or not _blind(av[1], flags, False, out):
                return False
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT):
            if not _blind(av[2], flags, False, out):
                return False
        elif op is _C.SUBPATTERN:
            sub_flags = (flags | av[1]) & ~av[2]
            if not _blind(av[3], sub_flags, first, out):
                return False
        elif op is _C.ATOMIC_GROUP:
            if not _blind(av, flags, first, out):
                return False
        elif op is _C.BRANCH:
            if not all(_blind(alt, flags, first, out) for alt in av[1]):
                return False
        elif op in (_C.GROUPREF, _C.GROUPREF_EXISTS):
            return False
    return True


def blind_before(pattern: str) -> frozenset[str]:
    """ASCII characters that ``pattern`` cannot tell, just before a position, from the start
    of the text: it looks back only through leading one-character negative look-behinds,
    and these accept the character. Empty when the pattern looks back in any other way."""
    try:
        parsed = _P.parse(pattern)
    except (re.error, RecursionError):
        return frozenset()
    out = set(_ASCII)
    return frozenset(out) if _blind(list(parsed), parsed.state.flags, True, out) else frozenset()


def _runs(seq: Any, flags: int, runs: list[str]) -> None:
    """Append to ``runs`` the runs of case-sensitive literal characters that every match of
    ``seq`` consumes one after another; anything else ends a run."""
    for op, av in seq:
        if op is _C.LITERAL and not flags & re.IGNORECASE:
            runs[-1] += chr(av)
        elif op is _C.SUBPATTERN and not (flags | av[1]) & ~av[2] & re.IGNORECASE:
            _runs(av[3], (flags | av[1]) & ~av[2], runs)
        elif op is _C.MAX_REPEAT or op is _C.MIN_REPEAT or op is _C.POSSESSIVE_REPEAT:
            runs.append("")
            if av[0] >= 1:  # at least once: its own literals are in every match
                _runs(av[2], flags, runs)
            runs.append("")
        else:
            runs.append("")


def required_literal(pattern: str) -> str | None:
    """The longest string (compared case-sensitively) every match of ``pattern`` contains,
    from the literal characters its top-level sequence must consume; None if there is none
    or the pattern is not ASCII (``re`` would read a non-ASCII class differently)."""
    if not pattern.isascii():
        return None
    try:
        parsed = _P.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    runs = [""]
    _runs(list(parsed), parsed.state.flags, runs)
    best = max(runs, key=len)
    return best or None
