"""The provider interface and the request object every adapter receives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollway.chunks import Event
from tollway.config import DeploymentConfig, ProviderConfig

__all__ = ["AnthropicNative", "ChatRequest", "Provider", "ProviderFactory"]

# Request fields that are tollway's own extensions: never sent upstream.
EXTENSION_FIELDS = frozenset({"firewall", "platform_tools", "include_route_trace"})


@dataclass(slots=True)
class AnthropicNative:
    """The client's own Anthropic Messages request (inbound ``/v1/messages``).

    An Anthropic deployment sends ``body`` as it is (the deployment's model, the
    output cap and ``stream`` set) with the client's ``anthropic-version`` /
    ``anthropic-beta`` in ``headers``; every other adapter uses the chat
    translation in ``ChatRequest``. Messages and tools the platform-tool loop appends
    to the chat request (past ``chat_messages`` / ``chat_tools``) are translated and
    appended to ``body`` by the Anthropic adapter.
    """

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    chat_messages: int = 0  # how many of ``ChatRequest.messages`` translate ``body``
    chat_tools: int = 0  # and of its tools; what follows was added by tollway (tool loop)
    raw_events: bool = True  # False: the tool loop writes the stream (no verbatim events)


@dataclass(slots=True)
class ChatRequest:
    """A validated chat request as the pipeline and the adapters see it.

    ``body`` is the client's JSON minus tollway's extension fields; adapters start
    from it so that fields tollway does not know reach OpenAI-compatible upstreams
    untouched. ``messages`` and ``tools`` may be rewritten by stages (request
    firewall redaction, platform-tool loop) and win over ``body``.
    """

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_output_tokens: int | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    anthropic: AnthropicNative | None = None  # inbound /v1/messages: the client's own body

    @property
    def choices(self) -> int:
        """How many choices the upstream is asked for (the client's ``n``, default 1)."""
        n = self.body.get("n")
        if isinstance(n, int | float) and n >= 1:
            return int(n)
        return 1


class Provider(Protocol):
    """An adapter: translates a ChatRequest to one upstream and its answer to events.

    ``stream`` raises ``UpstreamError`` for failures it sees (HTTP errors, error
    events, broken connections); deciding what to do about them is the router's job.
    """

    def stream(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...


class ProviderFactory(Protocol):
    def __call__(self, name: str, config: ProviderConfig) -> Provider: ...
