"""The ``limits:`` section and the limit spec shared by the config, the CLI and the admin API.

A spec may set ``rpm`` (requests per minute), ``tpm`` (tokens per minute: prompt
tokens at admission, output tokens at settlement), ``max_concurrent``, ``models``
(glob patterns of the aliases allowed), a spend cap (``spend_cap_usd`` per
``spend_period``) and ``per_model`` rate limits keyed by model alias.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tollway.bounds import MAX_MONEY_USD

__all__ = [
    "LimitSpec", "LimitsConfig", "ModelLimits", "Period", "RATE_FIELDS", "SPEC_FIELDS",
    "check_usd", "usd_text",
]

Period = Literal["daily", "weekly", "monthly", "total"]
_MAX_NUMBER_TEXT = 64


def usd_text(micros: int) -> str:
    """Integer micro-USD as the APIs show money: a string with six decimals."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"


def check_usd(value: Any) -> Decimal:
    """A cap amount: a JSON number or decimal text (≤ 64 characters), finite, 0 to 1e9 USD."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be an amount of USD (a JSON number or a decimal string)")
    text = repr(value) if isinstance(value, float) else value
    if isinstance(text, str):
        if len(text) > _MAX_NUMBER_TEXT:
            raise ValueError("must be an amount of USD; the text is too long to be one")
        text = text.strip()
    try:
        number = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"must be an amount of USD, got {str(text)[:64]!r}") from None
    if not number.is_finite() or not 0 <= number <= MAX_MONEY_USD:
        raise ValueError(f"must be a finite amount from 0 to {MAX_MONEY_USD} USD")
    return number
_MAX_RATE = 10**12


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelLimits(_Strict):
    """Rate limits of one (key or account, model alias)."""

    rpm: int | None = Field(None, gt=0, le=_MAX_RATE, description="requests per minute")
    tpm: int | None = Field(None, gt=0, le=_MAX_RATE, description="tokens per minute")
    max_concurrent: int | None = Field(
        None, gt=0, le=_MAX_RATE, description="requests in flight at once"
    )


RATE_FIELDS = ("rpm", "tpm", "max_concurrent")


class LimitSpec(ModelLimits):
    """Every control one key or account may have; unset fields mean "no limit"."""

    models: list[str] | None = Field(
        None, max_length=1000, description="glob patterns of the model aliases allowed"
    )
    spend_cap_usd: Decimal | None = Field(
        None, ge=0, le=MAX_MONEY_USD, allow_inf_nan=False,
        description="most the key/account may spend per spend_period (USD)",
    )  # fmt: skip
    spend_period: Period = Field("monthly", description="daily | weekly | monthly | total (UTC)")
    per_model: dict[str, ModelLimits] = Field(
        default_factory=dict, description="rate limits per model alias"
    )

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_defaults=True)

    def merged(self, over: LimitSpec | None) -> LimitSpec:
        """This spec with every field ``over`` sets replacing ours."""
        if over is None:
            return self
        data: dict[str, Any] = self.model_dump()
        data.update(over.model_dump(exclude_unset=True))
        return LimitSpec.model_validate(data)


SPEC_FIELDS = tuple(LimitSpec.model_fields)


class LimitsConfig(_Strict):
    """``limits:``: defaults for every key, per account and per key (name or id)."""

    defaults: LimitSpec = Field(
        default_factory=LimitSpec, description="limits every key gets (key scope)"
    )
    accounts: dict[str, LimitSpec] = Field(
        default_factory=dict, description="per account name or id (account scope)"
    )
    keys: dict[str, LimitSpec] = Field(
        default_factory=dict, description="per key name or id, over 'defaults'"
    )
    on_store_error: Literal["allow", "deny"] = Field(
        "allow", description="when Redis does not answer: allow (local fallback limiter) or deny"
    )
    concurrency_lease_seconds: float = Field(
        30.0, ge=1, le=86400,
        description="Redis: a concurrency slot is renewed every third of this while its request "
        "runs; the slots of an instance that died are free after it",
    )  # fmt: skip
    refresh_interval_seconds: float = Field(
        2.0, gt=0, le=3600, description="how often stored limits changed elsewhere are re-read"
    )
