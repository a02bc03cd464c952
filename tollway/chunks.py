"""Internal stream events: what providers yield and pipeline stages transform.

Every response, streamed or not, is a sequence of these events. Provider adapters
turn upstream bytes into them; stages (tools, firewall, meter) transform them;
only ``api/sse.py`` and ``pipeline/collect.py`` turn them back into OpenAI JSON.

The union, in the order they usually appear::

    Start        served model and upstream metadata (once per upstream call)
    TextDelta    content / reasoning / refusal text for one choice
    ToolCallDelta  one fragment of one tool call for one choice
    PlatformToolRecord  a server-side tool that tollway executed (issue 7)
    Finish       the finish reason of one choice
    Usage        token counts (cumulative; the last one wins)
    StreamError  an error after the commit point; always the last event
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Channel",
    "Event",
    "Finish",
    "FinishReason",
    "PlatformToolRecord",
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
    """An upstream call began answering: the model that serves it."""

    model: str
    system_fingerprint: str | None = None
    service_tier: str | None = None


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
class Finish:
    """The end of one choice."""

    reason: FinishReason
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, cumulative for the response; the last one seen wins.

    ``cost`` is filled by billing with the three money figures (as Decimal strings
    rendered by the encoder) and any other provider-specific details are kept in
    ``extra`` so they reach the client unchanged.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cost: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class StreamError:
    """An error after the commit point: sent as one SSE error event, then the end."""

    status: int
    message: str
    type: str = "api_error"
    code: str | int | None = None
    param: str | None = None


Event = Start | TextDelta | ToolCallDelta | PlatformToolRecord | Finish | Usage | StreamError
