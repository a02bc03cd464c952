"""The typed, frozen configuration: one YAML file, validated once at start.

``load_settings(path)`` reads YAML, interpolates ``${ENV_VAR}`` (and
``${ENV_VAR:-default}``) in string values, and validates. A bad file raises
``ConfigError`` whose message names each bad key and why.
"""

from __future__ import annotations

import functools
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tollway.billing.config import BillingConfig
from tollway.bounds import MAX_PRICE_PER_MTOK, MAX_TOKENS
from tollway.dashboard.config import DashboardConfig
from tollway.firewalls.config import PolicyConfig
from tollway.limits.config import LimitsConfig
from tollway.routing.config import RoutingConfig
from tollway.tools.config import ToolsConfig
from tollway.tracing.config import TracingConfig

__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "FREE",
    "ModelConfig",
    "Prices",
    "ProviderConfig",
    "ServerConfig",
    "Settings",
    "Timeouts",
    "UsageConvention",
    "load_settings",
    "parse_settings",
]


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_MAX_PRICE = MAX_PRICE_PER_MTOK  # USD per 1M tokens: a dollar a token


class Prices(_Strict):
    """USD per one million tokens; ``input_per_mtok`` and ``output_per_mtok`` are required.

    Cache prices default as documented: a cache read at the input price, a cache
    write (5-minute tier) at the input price, a 1-hour write at the 5-minute write
    price. Anthropic deployments must set all three (see ``Settings``). Reasoning
    tokens are billed at the output price. ``prices: free`` means all zero.
    """

    input_per_mtok: Decimal = Field(ge=0, le=_MAX_PRICE, description="USD per 1M input tokens")
    output_per_mtok: Decimal = Field(
        ge=0, le=_MAX_PRICE, description="USD per 1M output (and reasoning) tokens"
    )
    cached_input_per_mtok: Decimal | None = Field(
        None, ge=0, le=_MAX_PRICE, description="USD per 1M cache-read tokens (default: input)"
    )
    cache_write_per_mtok: Decimal | None = Field(
        None, ge=0, le=_MAX_PRICE, description="USD per 1M cache-write tokens, 5-minute tier "
        "(default: input)",
    )
    cache_write_1h_per_mtok: Decimal | None = Field(
        None, ge=0, le=_MAX_PRICE, description="USD per 1M cache-write tokens, 1-hour tier "
        "(default: the 5-minute price)",
    )

    # The prices in effect are worked out once per Prices (a billed request asks for them
    # a dozen times; as plain properties ≈ 1.6 µs for highest_input alone, 0.1 µs kept).
    # A frozen model never changes, and model_copy drops what was kept (below).

    @functools.cached_property
    def cached_input(self) -> Decimal:
        """The cache-read price in effect."""
        c = self.cached_input_per_mtok
        return self.input_per_mtok if c is None else c

    @functools.cached_property
    def cache_write(self) -> Decimal:
        """The 5-minute cache-write price in effect."""
        c = self.cache_write_per_mtok
        return self.input_per_mtok if c is None else c

    @functools.cached_property
    def cache_write_1h(self) -> Decimal:
        """The 1-hour cache-write price in effect."""
        c = self.cache_write_1h_per_mtok
        return self.cache_write if c is None else c

    @functools.cached_property
    def highest_input(self) -> Decimal:
        """The dearest price any prompt token may cost (a prompt token may be a cache write)."""
        return max(self.input_per_mtok, self.cached_input, self.cache_write, self.cache_write_1h)

    @property
    def is_free(self) -> bool:
        return self.highest_input == 0 and self.output_per_mtok == 0

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Prices:
        """A copy without the prices in effect this one kept (an update may change them)."""
        copied = super().model_copy(update=update, deep=deep)
        for name in _PRICES_IN_EFFECT:
            copied.__dict__.pop(name, None)
        return copied


_PRICES_IN_EFFECT = ("cached_input", "cache_write", "cache_write_1h", "highest_input")


FREE = Prices(input_per_mtok=Decimal(0), output_per_mtok=Decimal(0))


def _prices_literal(value: Any) -> Any:
    """``prices: free`` is the explicit way to say a deployment costs nothing."""
    if value == "free":
        return FREE
    return value


class UsageConvention(_Strict):
    """How a deployment's upstream reports usage."""

    reasoning: Literal["auto", "included", "separate"] = Field(
        "auto",
        description="reasoning tokens inside completion_tokens (OpenAI), separate from them "
        "(xAI), or auto: detected from total_tokens",
    )


class Timeouts(_Strict):
    """Seconds. Defaults suit LLMs: a short connect, a long total."""

    connect: float = Field(10.0, gt=0, description="TCP/TLS connect")
    first_token: float = Field(120.0, gt=0, description="request sent to first upstream event")
    idle: float = Field(120.0, gt=0, description="longest gap between two upstream events")
    total: float = Field(900.0, gt=0, description="whole upstream call")


class ProviderConfig(_Strict):
    """An upstream provider account: its type and how to reach it."""

    type: str = Field(description="adapter to use: a registered provider type")
    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1")
    api_key: str | None = Field(None, description="sent upstream; use ${ENV_VAR}")
    headers: dict[str, str] = Field(default_factory=dict, description="extra upstream headers")
    options: dict[str, Any] = Field(
        default_factory=dict, description="adapter-specific settings (see README)"
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from tollway.providers.registry import provider_factory  # adapters register there

        provider_factory(value)  # ValueError listing the known types
        return value

    @model_validator(mode="after")
    def _adapter_check(self) -> ProviderConfig:
        from tollway.providers.registry import check_provider_config

        if self.type == "openai" and not self.base_url:
            raise ValueError("an 'openai' provider needs base_url")
        check_provider_config(self)  # the adapter's own requirements
        return self


class DeploymentConfig(_Strict):
    """One place a model alias can be served from."""

    provider: str = Field(description="a key of 'providers'")
    model: str = Field(description="the model name the upstream knows")
    name: str | None = Field(None, description="unique name; default provider/model")
    weight: float = Field(1.0, gt=0, description="for the weighted strategy")
    prices: Prices = Field(
        FREE, description="required while billing is on; USD per 1M tokens, or 'free'"
    )
    usage: UsageConvention = Field(default_factory=UsageConvention)
    max_output_tokens: int | None = Field(
        None, gt=0, le=MAX_TOKENS, description="default output cap when the client sets none"
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = Field(
        None,
        description="OpenAI-compatible upstreams: the field that carries the output cap when "
        "the client used neither (default: max_completion_tokens for api.openai.com, "
        "else the provider's options.max_tokens_field, else max_tokens)",
    )
    max_in_flight: int | None = Field(None, gt=0, description="concurrent requests allowed")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    options: dict[str, Any] = Field(default_factory=dict, description="adapter-specific")
    apis: list[Literal["chat", "responses", "embeddings"]] | None = Field(
        None,
        description="the APIs the upstream speaks (default by provider type: OpenAI's own "
        "base URL all three, the simulated provider chat and embeddings, others chat)",
    )

    _free = field_validator("prices", mode="before")(_prices_literal)

    @property
    def id(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


class ModelConfig(_Strict):
    """A model name clients use: an alias for one or more deployments."""

    strategy: Literal["fallback", "weighted", "least-busy", "latency"] = "fallback"
    deployments: list[DeploymentConfig] = Field(min_length=1)
    owned_by: str = "tollway"


class ServerConfig(_Strict):
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="worker processes sharing the port")
    max_body_bytes: int = Field(
        4 * 1024 * 1024, gt=0, le=1 << 30, description="larger bodies get 413"
    )
    header_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds to receive a request's headers, else 408"
    )
    body_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds to receive a request's body, else 408"
    )
    max_header_bytes: int = Field(
        65536, ge=1024, le=1 << 24, description="request line and headers; larger get 431"
    )
    max_connections_per_ip: int | None = Field(
        1024, gt=0, description="open connections per client address (per worker); "
        "more get 429; null = no cap (e.g. behind a reverse proxy that limits)",
    )
    usage_on_final_chunk: bool = Field(
        True,
        description="attach usage to the finish chunk when the client did not ask for "
        "stream_options.include_usage; false gives strict OpenAI behaviour",
    )
    coalesce_under_load_ms: float = Field(
        40, ge=0, le=1000,
        description="while the event loop runs behind (a ready callback waits 5 ms or more), "
        "each upstream "
        "stream is read at most once per this many ms, so its chunks come in fewer reads "
        "and writes; tokens may reach clients up to this much later; 0 = off",
    )
    early_admission: Literal["under_load", "always", "never"] = Field(
        "under_load",
        description="chat completions on SQLite: decide a request's reservation at once and "
        "call the upstream while its group commit is pending (nothing reaches the client "
        "before it): under_load = while the event loop runs behind (when a commit takes "
        "tens of ms), always, or never",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class RequestDefaults(_Strict):
    """What a request gets when it names none itself."""

    firewall: str | None = Field(None, description="firewall policy name")
    platform_tools: list[str] | None = Field(None, description="platform tool names")


class Settings(_Strict):
    """Everything tollway reads from its config file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    database: str = Field("sqlite:///tollway.db", description="sqlite:///PATH or postgresql://…")
    admin_key: str | None = Field(None, description="guards /admin; or TOLLWAY_ADMIN_KEY")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    firewalls: dict[str, PolicyConfig] = Field(
        default_factory=dict,
        description="named firewall policies (presets strict-block, redact-pii, monitor)",
    )
    tools: ToolsConfig = Field(default_factory=ToolsConfig, description="platform tools")
    defaults: RequestDefaults = Field(default_factory=RequestDefaults)
    account_defaults: dict[str, RequestDefaults] = Field(
        default_factory=dict, description="per account (name or id), over 'defaults'"
    )
    key_defaults: dict[str, RequestDefaults] = Field(
        default_factory=dict, description="per API key id, over the account's"
    )
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="rate limits, spend caps, model access"
    )
    redis: str | None = Field(
        None, description="redis://… : rate-limit counters shared by every instance"
    )
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    def default_for(
        self, field: str, *, key_id: str | None, account_id: str | None, account_name: str | None
    ) -> Any:
        """A request default: the key's, else the account's, else the global one."""
        for table, name in (
            (self.key_defaults, key_id),
            (self.account_defaults, account_id),
            (self.account_defaults, account_name),
        ):
            if name and name in table:
                value = getattr(table[name], field)
                if value is not None:
                    return value
        return getattr(self.defaults, field)

    @model_validator(mode="before")
    @classmethod
    def _catalogue_prices(cls, data: Any) -> Any:
        """``prices: catalog`` (or ``{catalog: true, …}``) → the model catalogue's prices."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            return data
        from tollway.providers.catalogue import catalogue_prices

        raw = data.get("providers")
        providers: dict[str, Any] = raw if isinstance(raw, dict) else {}
        models = dict(data["models"])
        for alias, model in models.items():
            if not isinstance(model, dict) or not isinstance(model.get("deployments"), list):
                continue
            deployments = list(model["deployments"])
            for i, dep in enumerate(deployments):
                prices = dep.get("prices") if isinstance(dep, dict) else None
                explicit: dict[str, Any] = {}
                if isinstance(prices, dict) and prices.get("catalog") is True:
                    explicit = {k: v for k, v in prices.items() if k != "catalog"}
                elif prices != "catalog":
                    continue
                where = f"models.{alias}.deployments.{i}.prices"
                provider = providers.get(dep.get("provider"))
                ptype = provider.get("type") if isinstance(provider, dict) else None
                if not isinstance(ptype, str):
                    raise ValueError(f"{where}: 'catalog' needs a known provider")
                try:
                    found = catalogue_prices(ptype, str(dep.get("model")), set(Prices.model_fields))
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                deployments[i] = {**dep, "prices": {**found, **explicit}}
            models[alias] = {**model, "deployments": deployments}
        return {**data, "models": models}

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        for alias, model in self.models.items():
            seen: set[str] = set()
            for i, dep in enumerate(model.deployments):
                if dep.provider not in self.providers:
                    raise ValueError(
                        f"models.{alias}.deployments.{i}.provider: unknown provider "
                        f"{dep.provider!r} (known: {', '.join(sorted(self.providers)) or 'none'})"
                    )
                if dep.id in seen:
                    raise ValueError(
                        f"models.{alias}.deployments.{i}: duplicate name {dep.id!r} "
                        "(set 'name' to tell them apart)"
                    )
                seen.add(dep.id)
                if self.billing.enabled:
                    self._check_prices(f"models.{alias}.deployments.{i}", dep)
        return self

    def _check_prices(self, where: str, dep: DeploymentConfig) -> None:
        """Billing on: a deployment states its prices (money never silently becomes zero)."""
        if "prices" not in dep.model_fields_set:
            raise ValueError(
                f"{where}.prices: missing, and billing is on: set the deployment's prices "
                "(USD per 1M tokens: input_per_mtok, output_per_mtok, …) or `prices: free` "
                "(or turn billing off)"
            )
        prices = dep.prices
        if self.providers[dep.provider].type == "anthropic" and not prices.is_free:
            missing = [
                name
                for name in ("cached_input_per_mtok", "cache_write_per_mtok",
                             "cache_write_1h_per_mtok")
                if getattr(prices, name) is None
            ]  # fmt: skip
            if missing:
                raise ValueError(
                    f"{where}.prices: an Anthropic deployment reports prompt-cache reads and "
                    f"writes, each with its own price: set {', '.join(missing)}"
                )


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, where: str) -> Any:
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            value = os.environ.get(m.group(1))
            if value is None:
                if m.group(2) is None:
                    raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
                return m.group(2)
            return value

        return _ENV.sub(sub, node)
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{where}.{i}") for i, v in enumerate(node)]
    return node


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def parse_settings(data: Any) -> Settings:
    """Validate an already-loaded mapping (env interpolation included)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("invalid configuration: the top level must be a mapping")
    try:
        return Settings.model_validate(_interpolate(data, ""))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a YAML config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_settings(data)
