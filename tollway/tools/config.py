"""Platform-tool settings: the ``tools:`` section of the config file.

::

    tools:
      max_rounds: 5              # tool executions per response before "length"
      timeout: 10                # seconds per call unless the tool sets its own
      format:                    # the human-readable result shown in content
        enabled: true
        result: "\\n\\n> {name}: {result}\\n\\n"
      calculator: {}             # declaring a built-in turns it on
      clock: {default_zone: UTC}
      http_fetch:
        allow_hosts: [docs.python.org, "*.wikipedia.org"]
        max_bytes: 262144
      sources:                   # tools of installed packages (entry points "tollway.tools")
        weather: {units: metric}
      mcp_servers:
        docs: {command: python, args: [docs_server.py], price_usd: "0.001"}
        search: {url: "https://mcp.example.com/mcp", headers: {Authorization: "Bearer ${KEY}"}}
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tollway.bounds import MAX_TOOL_PRICE_USD

ToolPrice = Annotated[Decimal, Field(ge=0, le=MAX_TOOL_PRICE_USD, allow_inf_nan=False)]

__all__ = [
    "CalculatorConfig",
    "ClockConfig",
    "FormatConfig",
    "HttpFetchConfig",
    "McpServerConfig",
    "ToolsConfig",
    "PLACEHOLDERS",
]

PLACEHOLDERS = frozenset({"name", "arguments", "result", "error", "duration_ms"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ToolOptions(_Strict):
    """Options every tool has: a price per call and a timeout."""

    price_usd: Decimal = Field(Decimal(0), ge=0, le=MAX_TOOL_PRICE_USD, allow_inf_nan=False,
                               description="USD added per successful call")  # fmt: skip
    timeout: float | None = Field(
        None, gt=0, description="seconds per call (default: tools.timeout)"
    )


class CalculatorConfig(_ToolOptions):
    """Safe arithmetic and common math functions (no eval)."""

    max_length: int = Field(500, gt=0, le=10_000, description="longest expression accepted")
    max_bits: int = Field(4096, ge=64, le=65_536, description="largest integer result, in bits")


class ClockConfig(_ToolOptions):
    """The current date and time in a named IANA time zone."""

    default_zone: str = Field("UTC", description="zone used when the model names none")


class HttpFetchConfig(_ToolOptions):
    """GET a URL from an allow-listed host, with size, time and redirect limits."""

    allow_hosts: list[str] = Field(
        min_length=1, description="host names; '*.example.com' matches subdomains"
    )
    allow_ports: list[int] | None = Field(None, description="ports allowed (default: any)")
    allow_addresses: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description="non-public networks allowed anyway (CIDR), e.g. 127.0.0.1/32 for tests",
    )
    max_bytes: int = Field(256 * 1024, gt=0, description="largest response body accepted")
    max_redirects: int = Field(3, ge=0, le=20, description="redirects followed (each checked)")
    fetch_timeout: float = Field(10.0, gt=0, description="seconds for the whole fetch")
    user_agent: str = "tollway-http-fetch/0.1"

    @field_validator("allow_hosts")
    @classmethod
    def _lower(cls, hosts: list[str]) -> list[str]:
        return [h.strip().lower().rstrip(".") for h in hosts]


class McpServerConfig(_Strict):
    """An MCP server: a command over stdio or a streamable-HTTP URL."""

    command: str | None = Field(None, description="executable started with stdio transport")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")
    cwd: str | None = None
    url: str | None = Field(None, description="streamable-HTTP endpoint")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with HTTP requests")
    include: list[str] | None = Field(None, description="expose only these tools (default: all)")
    price_usd: Decimal = Field(Decimal(0), ge=0, le=MAX_TOOL_PRICE_USD, allow_inf_nan=False,
                               description="USD per successful call, any tool")  # fmt: skip
    prices: dict[str, ToolPrice] = Field(default_factory=dict,
                                         description="per-tool USD per call")  # fmt: skip
    timeout: float | None = Field(
        None, gt=0, description="seconds per call (default: tools.timeout)"
    )
    connect_timeout: float = Field(30.0, gt=0, description="seconds to start and list tools")
    required: bool = Field(True, description="fail start-up if the server cannot be reached")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of 'command' or 'url'")
        return self


class FormatConfig(_Strict):
    """How an executed tool is shown in ``delta.content``; placeholders in braces."""

    enabled: bool = Field(True, description="false: records only, no text")
    result: str = Field("\n\n> {name}: {result}\n\n", description="template for a success")
    error: str = Field("\n\n> {name} failed: {error}\n\n", description="template for a failure")
    max_chars: int = Field(2000, gt=0, description="longest result shown (the model gets more)")

    @field_validator("result", "error")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        unknown = set(_PLACEHOLDER.findall(template)) - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(PLACEHOLDERS))})"
            )
        return template


class ToolsConfig(_Strict):
    """Platform tools tollway executes inside the response."""

    calculator: CalculatorConfig | None = Field(None, description="declare to enable")
    clock: ClockConfig | None = Field(None, description="declare to enable")
    http_fetch: HttpFetchConfig | None = Field(None, description="declare to enable")
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="tool sources installed packages register (entry points "
        "'tollway.tools'), by name, with their options",
    )
    max_rounds: int = Field(5, ge=1, le=50, description="tool executions before finish 'length'")
    timeout: float = Field(10.0, gt=0, description="default seconds per call")
    max_result_chars: int = Field(16_000, gt=0, description="longest result given to the model")
    format: FormatConfig = Field(default_factory=FormatConfig)

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, Any]) -> dict[str, Any]:
        for name in servers:
            if not _SERVER_NAME.match(name):
                raise ValueError(f"MCP server name {name!r} must match [A-Za-z0-9_-]{{1,32}}")
            if name in ("calculator", "clock", "http_fetch"):
                raise ValueError(f"MCP server name {name!r} is a built-in tool's name")
        return servers

    @field_validator("sources")
    @classmethod
    def _registered_sources(cls, sources: dict[str, Any]) -> dict[str, Any]:
        from tollway.tools.registry import registered_source

        for name, options in sources.items():
            if not isinstance(options, dict):
                raise ValueError(f"tools.sources.{name}: options must be a mapping")
            registered_source(name)  # ValueError naming the installed ones
        return sources

    @property
    def declared(self) -> bool:
        """Whether any platform tool is configured."""
        return bool(self.calculator or self.clock or self.http_fetch or self.mcp_servers
                    or self.sources)
