"""Internal stream events: what providers yield and pipeline stages transform.

Every response, streamed or not, is a sequence of these events. Provider adapters
turn upstream bytes into them; stages (tools, firewall, meter) transform them;
only the OpenAI encoder (``api/encode.py``, streamed by ``api/sse.py``) turns them
back into OpenAI JSON.

The union, in the order they usually appear::

    Start        served model and upstream metadata (once per upstream call)
    TextDelta    content / reasoning / refusal text for one choice
    ToolCallDelta  one fragment of one tool call for one choice
    PlatformToolRecord  a server-side tool that tollway executed (issue 7)
    ProviderFields  fields an upstream put on a chunk that tollway does not model
    ProviderBlock   a provider-side block (e.g. Anthropic's server tools), for the trace
    Finish       the finish reason of one choice
    Usage        token counts (cumulative; the last one wins)
    StreamError  an error after the commit point; always the last event
    Raw          an upstream event in the client's own protocol (inbound
                 ``/v1/messages`` to an Anthropic deployment), re-emitted as is
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "Channel",
    "Event",
    "Finish",
    "FinishReason",
    "PlatformToolRecord",
    "ProviderBlock",
    "ProviderFields",
    "Raw",
    "ReasoningConvention",
    "Start",
    "StreamError",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
Channel = Literal["content", "reasoning", "refusal"]


@dataclass(frozen=True, slots=True)
class Start:
    """An upstream call began answering: the model that serves it.

    ``usage`` is the prompt side of the usage when the upstream reports it up
    front (Anthropic's ``message_start``), so that a call cut short is still
    billed with the real prompt and cache figures.
    """

    model: str
    system_fingerprint: str | None = None
    service_tier: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of text on one channel of one choice."""

    text: str
    channel: Channel = "content"
    choice: int = 0
    logprobs: Any = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; ``id`` and ``name`` only on its first fragment."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    choice: int = 0


@dataclass(frozen=True, slots=True)
class PlatformToolRecord:
    """A platform tool tollway executed inside the response (``delta.platform_tool``)."""

    name: str
    arguments: str
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ProviderFields:
    """Fields an upstream put on a chunk that tollway does not model, passed on as they are.

    Emitted only when there are some (the plain path never builds one), just before
    the other events of the same upstream chunk. ``chunk`` holds top-level fields
    (Perplexity's ``citations``, Azure's ``prompt_filter_results``, Groq's
    ``x_groq``); ``on_choice`` the fields of choice ``choice`` (Azure's
    ``content_filter_results``) and ``on_delta`` those of its delta (of its message
    when not streamed). ``choice`` is None for a chunk with no choice. Fields tollway
    owns (``id``, ``model``, ``usage``, ``index``, …) are never among them.
    """

    choice: int | None = 0
    chunk: dict[str, Any] | None = None
    on_choice: dict[str, Any] | None = None
    on_delta: dict[str, Any] | None = None

    def plus(self, later: ProviderFields) -> ProviderFields:
        """Both, the later one winning where they name the same field."""
        return ProviderFields(
            later.choice,
            _union(self.chunk, later.chunk),
            _union(self.on_choice, later.on_choice),
            _union(self.on_delta, later.on_delta),
        )


def _union(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if not a:
        return b
    if not b:
        return a
    return {**a, **b}


@dataclass(frozen=True, slots=True)
class ProviderBlock:
    """A block the provider produced that has no OpenAI form (e.g. Anthropic's
    ``server_tool_use`` / ``web_search_tool_result``, or a block type the adapter
    does not know): recorded in the trace's ``provider_blocks``, not sent as such."""

    type: str
    block: dict[str, Any]
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of one choice."""

    reason: FinishReason
    choice: int = 0


ReasoningConvention = Literal["included", "separate"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of a response as the provider reported them (cumulative; the last wins).

    Parts: ``cached_tokens`` (cache reads) and ``cache_write_tokens`` (cache writes,
    both tiers) are parts of ``prompt_tokens``; ``cache_write_1h_tokens`` is the
    one-hour-tier part of ``cache_write_tokens``. ``reasoning`` says whether
    ``reasoning_tokens`` are part of ``completion_tokens`` (OpenAI's convention,
    ``"included"``) or come on top of them (``"separate"``, e.g. xAI);
    ``output_tokens`` is what is billed at the output price either way.
    ``provider_total`` is the provider's ``total_tokens`` (None when not reported).

    ``cost`` is filled by billing with the three money figures (Decimal USD);
    provider-specific details are kept in ``extra`` so they reach the client.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cost: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning: ReasoningConvention = "included"
    provider_total: int | None = None

    def with_cost(self, cost: dict[str, Any] | None) -> Usage:
        """This usage with ``cost`` set (``dataclasses.replace`` costs twice as much, and
        billing prices every request's usage twice)."""
        return Usage(
            self.prompt_tokens, self.completion_tokens, self.cached_tokens,
            self.reasoning_tokens, self.estimated, cost, self.extra, self.cache_write_tokens,
            self.cache_write_1h_tokens, self.reasoning, self.provider_total,
        )  # fmt: skip

    @property
    def output_tokens(self) -> int:
        """Tokens billed at the output price: completion, plus reasoning when separate."""
        if self.reasoning == "separate":
            return self.completion_tokens + self.reasoning_tokens
        return self.completion_tokens

    @property
    def total_tokens(self) -> int:
        """The provider's total when it reported one, else prompt + output."""
        if self.provider_total is not None:
            return self.provider_total
        return self.prompt_tokens + self.output_tokens

    def plus(self, other: Usage) -> Usage:
        """The usage of two upstream calls together (numbers in ``extra`` summed too).

        Same convention: every figure is summed as reported. Different conventions:
        the sum uses OpenAI's (reasoning inside completion), so nothing is counted
        twice or lost. A total is kept only when both calls reported one.
        """
        a, b = self, other
        convention = a.reasoning
        if a.reasoning != b.reasoning:
            a, b, convention = a._included(), b._included(), "included"
        total = (
            a.provider_total + b.provider_total
            if a.provider_total is not None and b.provider_total is not None
            else None
        )
        return Usage(
            prompt_tokens=a.prompt_tokens + b.prompt_tokens,
            completion_tokens=a.completion_tokens + b.completion_tokens,
            cached_tokens=a.cached_tokens + b.cached_tokens,
            reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
            estimated=a.estimated or b.estimated,
            extra=_add_numbers(a.extra, b.extra),
            cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
            cache_write_1h_tokens=a.cache_write_1h_tokens + b.cache_write_1h_tokens,
            reasoning=convention,
            provider_total=total,
        )

    def _included(self) -> Usage:
        if self.reasoning == "included":
            return self
        return replace(self, completion_tokens=self.output_tokens, reasoning="included")


def _add_numbers(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Merge two ``extra`` mappings, summing numbers (recursively); b wins otherwise."""
    if not b:
        return a
    if not a:
        return b
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            out[key] = _add_numbers(mine, value)
        elif (
            isinstance(mine, int | float)
            and isinstance(value, int | float)
            and not isinstance(mine, bool)
            and not isinstance(value, bool)
        ):
            out[key] = mine + value
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class StreamError:
    """An error after the commit point: sent as one SSE error event, then the end."""

    status: int
    message: str
    type: str = "api_error"
    code: str | int | None = None
    param: str | None = None


@dataclass(frozen=True, slots=True)
class Raw:
    """An upstream event already in the client's wire format, passed on unchanged.

    An adapter yields it *before* the normalized events the same upstream event
    implies, and only when the request came in the upstream's own protocol
    (``ChatRequest.anthropic``). Billing, firewalls and traces read the normalized
    events; the protocol's encoder re-emits ``data`` verbatim. A stage that changes
    content (a redacting or blocking firewall) drops Raw events, and the encoder
    then writes the stream from the normalized events. ``kind`` is the upstream
    event type (``message_start``, ``content_block_delta``, … or ``message`` for a
    whole answer), ``index`` its content-block index (-1 when it has none),
    ``detail`` the delta's type of a ``content_block_delta`` (e.g. ``signature_delta``:
    a content-changing stage keeps those, they carry no text).
    """

    data: bytes
    kind: str
    index: int = -1
    detail: str = ""


Event = (
    Start
    | TextDelta
    | ToolCallDelta
    | PlatformToolRecord
    | ProviderFields
    | ProviderBlock
    | Finish
    | Usage
    | StreamError
    | Raw
)
