"""One error hierarchy; each class maps to one OpenAI error type and HTTP status.

::

    GatewayError (500, api_error)
    ├── InvalidRequest (400, invalid_request_error)
    │   ├── ContentBlocked (400, code content_filter)
    │   └── BodyTooLarge (413)
    ├── AuthenticationError (401, invalid_api_key)
    ├── PaymentRequired (402, insufficient_balance)
    ├── PermissionDenied (403)
    ├── NotFound (404)
    │   └── ModelNotFound (404, model_not_found)
    ├── RateLimited (429, rate_limit_exceeded)
    └── UpstreamError (502 / 503 / 504 or the upstream's client error)
        ├── UpstreamTimeout (504)
        └── UpstreamUnavailable (503)

``to_body()`` gives OpenAI's envelope ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BodyTooLarge",
    "ContentBlocked",
    "GatewayError",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "NotRecorded",
    "PaymentRequired",
    "PermissionDenied",
    "RateLimited",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class GatewayError(Exception):
    """Base of every error tollway returns to a client."""

    status: int = 500
    type: str = "api_error"
    code: str | int | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | int | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class ContentBlocked(InvalidRequest):
    code = "content_filter"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PaymentRequired(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_balance"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class NotRecorded(GatewayError):
    """What admission wrote (a reservation) could not be committed: nothing is served."""

    status = 503
    type = "server_error"
    code = "not_recorded"


class UpstreamError(GatewayError):
    """The upstream failed. ``retryable`` tells the router it may fall back."""

    status = 502
    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        code: str | int | None = None,
        type: str | None = None,
        param: str | None = None,
        misconfigured: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code, param=param)
        self.retryable = retryable
        self.retry_after = retry_after
        self.misconfigured = misconfigured
        if type is not None:
            self.type = type


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status = 503
    type = "upstream_unavailable"
    code = "upstream_unavailable"
