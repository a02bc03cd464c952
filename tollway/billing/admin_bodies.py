"""The admin API's request bodies: validated here, and described by the OpenAPI document.

Each body is a strict pydantic model (unknown fields refused); money, fee and
text fields run the shared checks in ``tollway.billing.inputs`` and declare the
JSON schema they accept, so ``GET /openapi.json`` shows exactly what is validated.
``parse_body(Model, json)`` returns the model or raises ``InvalidRequest`` naming
the field.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema

from tollway.billing.inputs import check_decimal, check_text
from tollway.bounds import MAX_FEE_FRACTION, MAX_MONEY_USD, MAX_NOTE_CHARS
from tollway.errors import InvalidRequest

__all__ = ["ADMIN_BODIES", "CreateAccountBody", "CreateKeyBody", "CreditBody", "parse_body"]

_NUMBER_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


def _decimal(low: Decimal, high: Decimal, what: str, description: str) -> tuple[Any, Any]:
    """The validator and the JSON schema of a bounded decimal field."""

    def check(value: Any) -> Decimal:
        return check_decimal(value, low=low, high=high, what=what)

    schema = {
        "description": description,
        "anyOf": [
            {"type": "number", "minimum": float(low), "maximum": float(high)},
            {"type": "string", "pattern": _NUMBER_TEXT, "maxLength": 64},
        ],
    }
    return BeforeValidator(check), WithJsonSchema(schema)


def _text(max_chars: int) -> tuple[Any, Any]:
    """The validator and the JSON schema of a bounded text field."""

    def check(value: Any) -> str:
        return check_text(value, max_chars=max_chars)

    schema = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return BeforeValidator(check), WithJsonSchema(schema)


_USD = _decimal(-MAX_MONEY_USD, MAX_MONEY_USD, "an amount of USD",
                "USD, a JSON number or a decimal string; |amount| ≤ 1e9")  # fmt: skip
_POSITIVE_USD = _decimal(Decimal(0), MAX_MONEY_USD, "an amount of USD",
                         "USD, a JSON number or a decimal string, 0 to 1e9")  # fmt: skip
_FRACTION = _decimal(Decimal(0), MAX_FEE_FRACTION, "a fraction such as 0.05",
                     "a fraction of the base cost, 0 to 10 (0.05 = 5%)")  # fmt: skip
_NAME = _text(200)
_NOTE = _text(MAX_NOTE_CHARS)

Usd = Annotated[Decimal, _USD[0], _USD[1]]
PositiveUsd = Annotated[Decimal, _POSITIVE_USD[0], _POSITIVE_USD[1]]
Fraction = Annotated[Decimal, _FRACTION[0], _FRACTION[1]]
Name = Annotated[str, _NAME[0], _NAME[1]]
Note = Annotated[str, _NOTE[0], _NOTE[1]]
Expiry = Annotated[
    str | int | float | None,
    WithJsonSchema({
        "description": "a duration from now (30d, 12h, 90m), an ISO 8601 date/time (UTC if "
        "no zone) or Unix seconds; in the future and at most 100 years ahead",
        "anyOf": [{"type": "string", "maxLength": 64}, {"type": "number"}, {"type": "null"}],
    }),
]  # fmt: skip


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateAccountBody(_Body):
    """``POST /admin/accounts``."""

    name: Name
    credit_usd: PositiveUsd | None = None
    platform_fee_fraction: Fraction | None = None
    fixed_fee_usd: PositiveUsd | None = None


class CreateKeyBody(_Body):
    """``POST /admin/accounts/{account}/keys``; ``expires_at`` is an alias of ``expires``."""

    name: Name | None = None
    expires: Expiry = None
    expires_at: Expiry = None


class CreditBody(_Body):
    """``POST /admin/accounts/{account}/credit``: a negative amount is an adjustment."""

    amount_usd: Usd
    note: Note | None = None
    kind: Literal["credit", "adjustment"] | None = None


ADMIN_BODIES: dict[str, type[_Body]] = {
    "create_account": CreateAccountBody,
    "create_key": CreateKeyBody,
    "credit": CreditBody,
}

B = TypeVar("B", bound=_Body)


def parse_body(model: type[B], body: Any) -> B:
    """Validate a decoded JSON body (None = empty) against ``model``."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in err["loc"][:1]) or None
        if err["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
        elif err["type"] == "extra_forbidden":
            message = f"Unknown parameter: '{param}'."
        else:
            message = f"Invalid value for '{param}': {err['msg'].removeprefix('Value error, ')}."
        raise InvalidRequest(message, param=param, code="invalid_value") from None
