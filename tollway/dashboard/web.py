"""Small raw-ASGI helpers for HTML pages: the request, forms, cookies and responses."""

from __future__ import annotations

from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from tollway.api.http import Receive, Scope, Send, read_body

__all__ = ["Page", "WebRequest", "cookie_header", "read_request", "send_page"]

MAX_FORM_BYTES = 65536

# Every page: no caching (a new key is shown once), no framing, no third-party anything.
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
     b" frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
]


@dataclass(slots=True)
class WebRequest:
    """A parsed request: method, path, query, form fields and cookies."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    cookies: dict[str, str]
    headers: dict[str, str]
    router: Any = None  # the gateway's router, for deployment health
    client: str = ""  # the client's address


@dataclass(slots=True)
class Page:
    """A response: status, body, content type and extra headers (e.g. Set-Cookie)."""

    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def redirect(cls, location: str, *headers: tuple[str, str]) -> Page:
        return cls(303, b"", headers=[("location", location), *headers])


def _cookies(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return {}
    return {k: v.value for k, v in jar.items()}


def _clean(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return {k.replace("\x00", ""): v.replace("\x00", "") for k, v in pairs}


async def read_request(scope: Scope, receive: Receive) -> WebRequest:
    """The request with its urlencoded form (POST) read, up to ``MAX_FORM_BYTES``."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    form: dict[str, str] = {}
    if scope["method"] == "POST":
        body = await read_body(receive, MAX_FORM_BYTES, scope)
        form = _clean(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    return WebRequest(
        scope["method"], scope["path"], _clean(parse_qsl(query, keep_blank_values=True)),
        form, _cookies(headers.get("cookie")), headers,
    )  # fmt: skip


def cookie_header(name: str, value: str, max_age: int, path: str = "/dashboard") -> tuple[str, str]:
    """``Set-Cookie``: HttpOnly, SameSite=Strict, scoped to the dashboard (``max_age`` 0 clears)."""
    return ("set-cookie", f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly;"
                          " SameSite=Strict")  # fmt: skip


async def send_page(send: Send, page: Page, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = page.body.encode() if isinstance(page.body, str) else page.body
    headers: list[Any] = [(b"content-type", page.content_type.encode()),
                          (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in page.headers]
    headers += extra or []
    await send({"type": "http.response.start", "status": page.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
