"""Per-request state that outlives the stream: what settlement and traces read.

Stages keep their working state in local variables; they only *report* here
(verdicts, tool calls, the final usage), so that settlement can run from a
``finally`` that a client disconnect cannot skip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tollway.chunks import Usage
from tollway.config import DeploymentConfig
from tollway.errors import NotRecorded
from tollway.providers.base import ChatRequest

if TYPE_CHECKING:
    from tollway.calls import Budget

__all__ = ["Attempt", "Caller", "RequestContext"]


class Caller(Protocol):
    """Who sent the request, as the authenticator established it (``auth.AuthResult``
    has also ``account_name`` and the account record)."""

    @property
    def account_id(self) -> str: ...
    @property
    def key_id(self) -> str: ...


@dataclass(slots=True)
class Attempt:
    """One try of one deployment by the router."""

    deployment: str
    outcome: str  # "ok" | "error" | "skipped" | "abandoned" (the request ended while it ran)
    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0
    misconfigured: bool = False


@dataclass(slots=True, weakref_slot=True)
class RequestContext:
    """One request's state. ``request_id`` is tollway's own unique id: it keys the
    reservation, the ledger entry and the trace. ``client_request_id`` is the client's
    ``X-Request-Id``, a label kept in headers and traces, never a key."""

    request_id: str
    client_request_id: str | None = None
    received_at: float = field(default_factory=time.time)
    received_perf: float = field(default_factory=time.perf_counter)
    account_id: str | None = None
    key_id: str | None = None
    account: Caller | None = None  # the authenticated caller, when auth is on
    request: ChatRequest | None = None
    requested_model: str | None = None
    deployment: DeploymentConfig | None = None  # the one that served
    served_model: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None
    finish_reasons: dict[int, str] = field(default_factory=dict)
    status: int = 200
    error: str | None = None
    error_code: str | int | None = None
    error_type: str | None = None
    client_disconnected: bool = False
    delivered: str = "none"  # how much of the output reached the client: none | partial | all
    partial: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # perf_counter marks
    firewall_verdicts: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # provider-side blocks with no OpenAI form (Anthropic server tools, unknown blocks)
    provider_blocks: list[dict[str, Any]] = field(default_factory=list)
    reservation: Any = None  # billing's open reservation
    # the handler delivers nothing before ``committed()``: admission may return with its
    # writes (a reservation) decided but not yet committed, so the upstream call starts
    # meanwhile; ``admission_commit`` is then what ends once they are (or fails)
    early_admission: bool = False
    admission_commit: Any = None  # a future: awaited by ``committed()``
    admission_record: Any = None  # the same commit's, for settlement (never cancelled)
    budget: Budget | None = None  # billing's running tab: every upstream call is held to it
    extra_usage_cost: Any = None  # e.g. per-call platform tool prices (Decimal USD)
    provider_overage: dict[str, Any] | None = None  # cost beyond the reservation, not charged
    platform_tools: list[Any] | None = None  # the tools the request attaches (tools.Tool)
    trace_bodies: Any = None  # tracing's request/response bodies, for accounts that opt in
    spend_caps: tuple[Any, ...] = ()  # caps the reservation must also fit (tollway.limits)
    limits: Any = None  # what tollway.limits acquired (rate-limit slots to release)
    limit_hit: dict[str, Any] | None = None  # the limit that refused the request, if any
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # e.g. x-ratelimit-*
    # the API served when not chat completions: {"endpoint": ..., "mode": "pass-through" |
    # "translated"} (the trace records it)
    api: dict[str, str] | None = None

    def fail(
        self, status: int, message: str, code: str | int | None = None, type: str | None = None
    ) -> None:
        """Record the error the request ends with (what the client is told)."""
        self.status = status
        self.error = message
        self.error_code = code
        self.error_type = type

    async def committed(self) -> None:
        """Wait until what admission wrote is committed (see ``early_admission``); raises
        ``NotRecorded`` (503) if that commit failed: then nothing may be served."""
        pending = self.admission_commit
        if pending is None:
            return
        try:
            await pending  # directly: a shield would cost a loop iteration, tens of ms under load
        except Exception as exc:  # noqa: BLE001 (the database's error, told as a 503)
            raise NotRecorded(
                "The request could not be recorded; nothing was served. Please retry."
            ) from exc
        self.admission_commit = None
        self.admission_record = None

    def mark(self, name: str) -> None:
        """Record a timing mark (seconds since the request was received)."""
        self.timings.setdefault(name, time.perf_counter() - self.received_perf)
