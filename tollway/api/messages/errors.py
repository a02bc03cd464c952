"""Tollway's errors in Anthropic's envelope and with Anthropic's statuses.

``{"type": "error", "error": {"type": <anthropic type>, "message": …}}``:

======  ==============================================================
status  Anthropic type (what tollway error gives it)
======  ==============================================================
400     invalid_request_error (bad body, blocked by a firewall, upstream 400)
401     authentication_error (no key, unknown, revoked or expired key)
402     billing_error (the balance cannot cover the reservation)
403     permission_error (a disabled account)
404     not_found_error (unknown model or URL)
405     invalid_request_error (a known path with another method)
408     timeout_error (the request's body came too slowly)
413     request_too_large
429     rate_limit_error (limits, too many connections, upstream 429)
500     api_error (tollway's own failure)
502     api_error (the upstream failed)
504     timeout_error (an upstream deadline)
529     overloaded_error (no deployment can take the request now: 503)
======  ==============================================================
"""

from __future__ import annotations

from typing import Any

from tollway.chunks import StreamError
from tollway.errors import GatewayError

__all__ = ["anthropic_error", "error_event", "error_type"]

_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _status(status: int) -> int:
    return 529 if status == 503 else status


def anthropic_error(error: GatewayError) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error before any response byte was sent."""
    status = _status(error.status)
    return status, {"type": "error", "error": {"type": error_type(status),
                                                "message": error.message}}


def error_event(error: StreamError) -> dict[str, Any]:
    """The ``error`` event that ends a stream after the commit point."""
    return {"type": "error", "error": {"type": error_type(_status(error.status)),
                                       "message": error.message}}
