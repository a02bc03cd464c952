"""Minimal raw-ASGI helpers: body reading with a limit, JSON and error responses."""

from __future__ import annotations

from typing import Any

from tollway.asgi import Receive, Scope, Send
from tollway.errors import BodyTooLarge, GatewayError

__all__ = ["ClientGone", "Receive", "Scope", "Send", "read_body", "send_error", "send_json"]



class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # the HTTP parser checked it
    return None


async def read_body(receive: Receive, limit: int, scope: Scope | None = None) -> bytes:
    """The whole request body; ``BodyTooLarge`` (413) past ``limit`` bytes.

    With ``scope``, a declared ``Content-Length`` above ``limit`` is refused before
    any of the body is read (and the connection closes after the 413).
    """
    if scope is not None:
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            error = _too_large(limit)
            error.headers["connection"] = "close"
            raise error
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body  # type: ignore[no-any-return]
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"Request body too large: the limit is {limit} bytes.")


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A complete JSON response."""
    from tollway.api.encode import dumps

    payload = dumps(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def send_error(
    send: Send, error: GatewayError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """An OpenAI-style error envelope with the error's status."""
    extra = list(headers or [])
    extra.extend(header_list(error.headers))
    await send_json(send, error.status, error.to_body(), extra)
