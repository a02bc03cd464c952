"""A whole plugin (entry point ``tollway.plugins``): it adds a field to whole responses."""

from __future__ import annotations

from typing import Any

from tollway.context import RequestContext
from tollway.plugins import Host


class ShoutPlugin:
    """Marks the non-streaming responses its provider type served (``"shouted": true``)."""

    name = "shout"

    def register(self, host: Host) -> None:
        shouting = {n for n, p in host.settings.providers.items() if p.type == "shout"}

        def fields(ctx: RequestContext) -> dict[str, Any] | None:
            served = ctx.deployment.provider if ctx.deployment is not None else None
            return {"shouted": True} if served in shouting else None

        host.response_fields(fields)
