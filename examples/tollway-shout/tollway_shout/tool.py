"""``word_count``: a platform tool source, configured as ``tools: {sources: {word_count: {}}}``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tollway.tools.registry import Tool, ToolError


class WordCountSource:
    """A ``ToolSource``: ``start()`` returns its tools, ``close()`` releases nothing."""

    def __init__(self, options: dict[str, Any], timeout: float) -> None:
        self.price = Decimal(str(options.get("price_usd", "0")))
        self.timeout = timeout

    async def start(self) -> list[Tool]:
        async def count(arguments: dict[str, Any]) -> str:
            text = arguments.get("text")
            if not isinstance(text, str):
                raise ToolError("'text' must be a string")
            return f"{len(text.split())} words"

        return [Tool(
            name="word_count",
            description="Count the words of a text.",
            parameters={"type": "object", "properties": {"text": {"type": "string"}},
                        "required": ["text"]},
            call=count, price_usd=self.price, timeout=self.timeout,
        )]  # fmt: skip

    async def close(self) -> None:
        return None
