"""Inbound Anthropic Messages API: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

``MessagesPlugin`` is the one entry point: a built-in plugin whose two raw routes run the
gateway's steps (``host.pipeline``, the same steps as ``api/chat.py``) with Anthropic's
wire format at the edges. The modules: ``validate`` (the Messages body), ``errors``
(Anthropic's envelope and statuses), ``handler`` (the request through the pipeline),
``encode`` (events → Anthropic SSE or a whole message), ``docs`` (``/openapi.json``);
the request translation lives in ``tollway.wire.anthropic_in`` (firewalls re-translate
after a redaction).
"""

from __future__ import annotations

from typing import Any

from tollway.plugins.contract import Host, RawRoute

__all__ = ["MessagesPlugin"]


class MessagesPlugin:
    """Mounts ``/v1/messages`` and ``/v1/messages/count_tokens`` (API keys as on chat)."""

    name = "messages"

    def register(self, host: Host) -> None:
        from tollway.api.messages.docs import COUNT_TOKENS, MESSAGES
        from tollway.api.messages.handler import (
            handle_count_tokens,
            handle_messages,
            send_anthropic_error,
        )

        async def messages(scope: Any, receive: Any, send: Any) -> None:
            await handle_messages(host.pipeline, scope, receive, send)

        async def count_tokens(scope: Any, receive: Any, send: Any) -> None:
            await handle_count_tokens(host.pipeline, scope, receive, send)

        for path, handler, doc in (("/v1/messages", messages, MESSAGES),
                                   ("/v1/messages/count_tokens", count_tokens, COUNT_TOKENS)):
            host.route(RawRoute("POST", path, handler, doc, access="key",
                                errors=send_anthropic_error))
