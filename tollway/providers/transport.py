"""One upstream HTTP exchange, shared by the HTTP adapters: POST, map failures, read.

Connection failures, HTTP errors, broken streams and invalid JSON all become
``UpstreamError`` (for the router to judge); on any early exit the connection is
dropped rather than returned to the pool, so the upstream stops generating.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tollway.chunks import Event
from tollway.config import DeploymentConfig
from tollway.errors import UpstreamError, UpstreamTimeout

__all__ = ["exact_bytes", "json_body", "upstream_events"]

ErrorMapper = Callable[[int, bytes, Any, str], UpstreamError]


def exact_bytes(data: bytes) -> bytes:
    """``data`` in a buffer of its own size. orjson's bytes keep the buffer they were
    written in: at least 4 KiB, up to twice the length of a body of many strings, and 10
    to 16 times that of one long string (a pasted 70 KB document holds 1 MB). aiohttp
    keeps a request's body until the answer's headers arrive: for a whole answer, until
    the upstream has generated all of it."""
    return bytes(memoryview(data))


def json_body(obj: Any) -> bytes:
    """``obj`` as a JSON request body of its own size (see ``exact_bytes``)."""
    return exact_bytes(orjson.dumps(obj))


@functools.lru_cache(maxsize=64)
def _timeout(connect: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts of an upstream call (immutable: one per connect timeout)."""
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect)


async def upstream_events(
    session: aiohttp.ClientSession,
    url: str | URL,
    headers: Mapping[str, str],
    make_body: Callable[[], bytes],
    deployment: DeploymentConfig,
    provider: str,
    *,
    stream: bool,
    error_from: ErrorMapper,
    read_stream: Callable[[aiohttp.ClientResponse], AsyncIterator[Event]],
    read_whole: Callable[[Any], list[Event]],
) -> AsyncIterator[Event]:
    """POST ``make_body()`` to ``url`` and yield the events of the answer."""
    try:
        resp = await session.post(url, data=exact_bytes(make_body()), headers=headers,
                                  timeout=_timeout(deployment.timeouts.connect))
    except TimeoutError:
        raise UpstreamTimeout(f"connecting to provider {provider!r} timed out") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(
            f"cannot reach provider {provider!r}: {type(exc).__name__}", status=502
        ) from None
    completed = False
    try:
        if resp.status >= 400:
            raise error_from(resp.status, await resp.read(), resp.headers, provider)
        if stream:
            async for event in read_stream(resp):
                yield event
        else:
            for event in read_whole(orjson.loads(await resp.read())):
                yield event
        completed = True
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
        raise UpstreamError(
            f"provider {provider!r} connection broke: {type(exc).__name__}", status=502
        ) from None
    except orjson.JSONDecodeError:
        raise UpstreamError(f"provider {provider!r} sent invalid JSON", status=502) from None
    finally:
        if completed:
            resp.release()
        else:
            resp.close()  # drop the connection: the upstream stops generating
