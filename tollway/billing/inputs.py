"""Values from outside (admin API, CLI): money, fees and text, parsed and bounded, or a 400.

Accepted money: a JSON number or a decimal string (``12.5``, ``"12.50"``,
``"1e3"``); refused, with the field named: booleans, other types,
``NaN``/``Infinity``, text that is not a number, and values outside the
documented bounds (``tollway.bounds``). Floats are read through their shortest
repr, so ``1.1`` is exactly 1.1 USD. Text (names, notes) must be a string of
bounded length without NUL characters (PostgreSQL cannot store them).

The ``check_*`` functions raise ``ValueError`` with a sentence that starts with
"must" (for pydantic validators); the ``parse_*`` functions raise
``InvalidRequest`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from tollway.bounds import MAX_FEE_FRACTION, MAX_MONEY_USD, MAX_NOTE_CHARS
from tollway.errors import InvalidRequest

__all__ = [
    "check_decimal",
    "check_text",
    "parse_fee_fraction",
    "parse_text",
    "parse_usd",
]

_MAX_NUMBER_TEXT = 64
T = TypeVar("T")


def check_decimal(value: Any, *, low: Decimal, high: Decimal, what: str) -> Decimal:
    """``value`` as an exact finite Decimal in ``[low, high]``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(
            f"must be {what} (a JSON number or a decimal string), not {type(value).__name__}"
        )
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str):
        if len(value) > _MAX_NUMBER_TEXT:
            raise ValueError(f"must be {what}; the text is too long to be one")
        value = value.strip()
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ValueError(f"must be {what}, got {str(value)!r}") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if not low <= number <= high:
        raise ValueError(f"must be between {low} and {high}")
    return number


def check_text(value: Any, *, max_chars: int = MAX_NOTE_CHARS) -> str:
    """A string of 1..``max_chars`` characters of UTF-8 text without NUL, else ValueError."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not 1 <= len(value) <= max_chars or "\x00" in value or not _encodable(value):
        raise ValueError(f"must be 1 to {max_chars} characters of UTF-8 text, without NUL")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from undecodable command-line bytes)
        return False
    return True


def _named(param: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except ValueError as exc:
        raise InvalidRequest(f"'{param}' {exc}.", param=param, code="invalid_value") from None


def parse_usd(
    value: Any, param: str, *, low: Decimal = -MAX_MONEY_USD, high: Decimal = MAX_MONEY_USD
) -> Decimal:
    """An amount of USD within ±1e9 (or the tighter ``low``/``high``)."""
    return _named(param, lambda: check_decimal(value, low=low, high=high, what="an amount of USD"))


def parse_fee_fraction(value: Any, param: str) -> Decimal:
    """A platform fee fraction in [0, 10]."""
    return _named(param, lambda: check_decimal(
        value, low=Decimal(0), high=MAX_FEE_FRACTION, what="a fraction such as 0.05"
    ))  # fmt: skip


def parse_text(
    value: Any, param: str, *, max_chars: int = MAX_NOTE_CHARS, required: bool = False
) -> str | None:
    """An optional (or ``required``) bounded string without NUL."""
    if value is None and not required:
        return None
    return _named(param, lambda: check_text(value, max_chars=max_chars))
