"""A stage is an async generator over events; ``compose`` chains them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from tollway.chunks import Event
from tollway.context import RequestContext

__all__ = ["Stage", "compose"]

Stage = Callable[[AsyncIterator[Event], RequestContext], AsyncIterator[Event]]


def compose(
    source: AsyncIterator[Event], stages: Sequence[Stage], ctx: RequestContext
) -> AsyncIterator[Event]:
    """Feed ``source`` through ``stages`` in order (the first stage sees the source)."""
    stream = source
    for stage in stages:
        stream = stage(stream, ctx)
    return stream
