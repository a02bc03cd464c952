"""``type: shout``: a provider that answers with the last message, upper-cased.

When the request offers tools and no tool has answered yet, it calls the first
tool with the last user message as ``text`` (so a platform tool runs inside the
response); once a tool has answered, it shouts that answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from tollway.chunks import Event, Finish, Start, TextDelta, ToolCallDelta, Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.providers.base import ChatRequest


class ShoutProvider:
    """The adapter: ``ShoutProvider(name, config, session)``, as the registry calls it."""

    def __init__(self, name: str, config: ProviderConfig, session: Any) -> None:
        self.name = name
        self.suffix = str(config.options.get("suffix", "!"))

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        """Runs when the config is validated (``tollway check-config`` reports it)."""
        if len(str(config.options.get("suffix", "!"))) > 10:
            raise ValueError("a 'shout' provider's options.suffix is at most 10 characters")

    async def stream(self, request: ChatRequest, deployment: DeploymentConfig
                     ) -> AsyncIterator[Event]:
        yield Start(model=deployment.model)
        last = request.messages[-1]
        if request.tools and last.get("role") != "tool":
            name = request.tools[0]["function"]["name"]
            arguments = json.dumps({"text": str(last.get("content") or "")})
            yield ToolCallDelta(index=0, id="call_shout", name=name, arguments=arguments)
            yield Finish("tool_calls")
            yield Usage(prompt_tokens=len(request.messages), completion_tokens=1)
            return
        words = (str(last.get("content") or "").upper() + self.suffix).split(" ")
        for i, word in enumerate(words):
            yield TextDelta(word if i == 0 else " " + word)
        yield Finish("stop")
        yield Usage(prompt_tokens=len(request.messages), completion_tokens=len(words))

    async def aclose(self) -> None:
        return None
