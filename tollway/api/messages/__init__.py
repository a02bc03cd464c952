"""Inbound Anthropic Messages API: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

``install(app)`` is the one entry point: it mounts both routes. The modules:
``validate`` (the Messages body), ``errors`` (Anthropic's envelope and statuses),
``handler`` (the request through the gateway's pipeline), ``encode`` (events →
Anthropic SSE or a whole message); the request translation lives in
``tollway.wire.anthropic_in`` (firewalls re-translate after a redaction).
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]


def install(app: Any) -> None:
    """Mount ``/v1/messages`` and ``/v1/messages/count_tokens`` on ``app`` (key access)."""
    from tollway.api.messages.docs import COUNT_TOKENS, MESSAGES
    from tollway.api.messages.handler import (
        handle_count_tokens,
        handle_messages,
        send_anthropic_error,
    )

    gateway = app.gateway

    async def messages(scope: Any, receive: Any, send: Any) -> None:
        await handle_messages(gateway, scope, receive, send)

    async def count_tokens(scope: Any, receive: Any, send: Any) -> None:
        await handle_count_tokens(gateway, scope, receive, send)

    app.error_senders["/v1/messages"] = send_anthropic_error  # e.g. 405 on another method
    app.add_raw_route("POST", "/v1/messages", messages, MESSAGES, access="key")
    app.add_raw_route("POST", "/v1/messages/count_tokens", count_tokens, COUNT_TOKENS,
                      access="key")
