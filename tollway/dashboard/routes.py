"""The dashboard's ASGI handler: login, sessions, CSRF, static files, dispatch to pages.

Everything under ``/dashboard`` comes here. A page handler gets the request and
the ``Session``; for an account's session every query it makes is scoped to that
account (``pages.py``). Keys are read only from a POSTed form and never written
to a page, a URL or a log (a new key is shown once, in the answer to the form
that created it).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from tollway.api.http import ClientGone, Receive, Scope, Send
from tollway.auth import hash_key
from tollway.billing.pricing import usd_str
from tollway.dashboard.session import COOKIE, PRE_COOKIE, Session, SessionSigner, derive_secret
from tollway.dashboard.web import Page, WebRequest, cookie_header, read_request, send_page
from tollway.errors import GatewayError

if TYPE_CHECKING:
    from jinja2 import Environment

    from tollway.config import Settings

__all__ = ["PREFIX", "Dashboard"]

log = logging.getLogger("tollway.dashboard")

PREFIX = "/dashboard"
LOGIN_FAILURES = 10  # failed logins per client address within LOGIN_WINDOW seconds, then 429
LOGIN_WINDOW = 300.0
Handler = Callable[[WebRequest, Session, dict[str, str]], Awaitable[Page]]
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip


def _fmt_time(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


class Dashboard:
    """State shared by the pages: settings, storage, templates, session signer."""

    def __init__(self, settings: Settings, admin_key: str | None,
                 router: Callable[[], Any] | None = None) -> None:
        """``router``: returns the gateway's router (for deployment health) when asked."""
        from tollway.dashboard.pages import Pages

        self._router = router
        self.settings = settings
        config = settings.dashboard
        self.admin_key = admin_key
        self.signer = SessionSigner(derive_secret(config.session_secret, self.admin_key),
                                    config.session_hours * 3600)  # fmt: skip
        self._env: Environment | None = None  # built on the first page (jinja2: ~9 MB)
        self.static = self._load_static()
        self.pages = Pages(self)
        self._failures: dict[str, list[float]] = {}
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        for method, pattern, handler in self.pages.routes():
            regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
            self._routes.append((method, regex, handler))

    @staticmethod
    def _load_static() -> dict[str, tuple[bytes, str]]:
        files: dict[str, tuple[bytes, str]] = {}
        for entry in resources.files("tollway.dashboard").joinpath("static").iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if suffix in _STATIC_TYPES:
                files[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
        return files

    async def start(self) -> None:
        await self.pages.start()

    async def stop(self) -> None:
        await self.pages.stop()

    @property
    def env(self) -> Environment:
        """The templates' environment, made (and jinja2 imported) on first use."""
        if self._env is None:
            from jinja2 import Environment, PackageLoader, select_autoescape

            env = Environment(loader=PackageLoader("tollway.dashboard", "templates"),
                              autoescape=select_autoescape(["html"]))  # fmt: skip
            env.filters["when"] = _fmt_time
            env.filters["usd"] = usd_str
            self._env = env
        return self._env

    def render(self, template: str, status: int = 200, **context: Any) -> Page:
        html = self.env.get_template(template).render(prefix=PREFIX, **context)
        return Page(status, html)

    # -- ASGI -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secure = scope.get("scheme") == "https"
        try:
            request = await read_request(scope, receive)
            request.router = self._router() if self._router is not None else None
            request.client = str((scope.get("client") or ("",))[0])
            page = await self._dispatch(request, secure)
        except ClientGone:
            return
        except GatewayError as exc:
            page = self.render("error.html", exc.status, message=exc.message, session=None)
        except Exception:
            log.exception("dashboard error on %s %s", scope["method"], scope["path"])
            page = self.render("error.html", 500, message="The dashboard had an error.",
                               session=None)  # fmt: skip
        if secure:
            page.headers = [(k, v + "; Secure") if k == "set-cookie" else (k, v)
                            for k, v in page.headers]  # fmt: skip
        await send_page(send, page)

    async def _dispatch(self, request: WebRequest, secure: bool) -> Page:
        path, method = request.path.rstrip("/") or "/", request.method
        if path == PREFIX:
            path = PREFIX + "/"
        if method == "GET" and path.startswith(PREFIX + "/static/"):
            found = self.static.get(path.removeprefix(PREFIX + "/static/"))
            if found is None:
                return self.render("error.html", 404, message="No such file.", session=None)
            return Page(200, found[0], found[1], [("cache-control", "public, max-age=3600")])
        if path == PREFIX + "/login":
            return await self._login(request)
        session = await self._session(request)
        if session is None:
            if method == "GET":
                return Page.redirect(PREFIX + "/login")
            return self.render("error.html", 401, message="Log in first.", session=None)
        if method == "POST" and not self.signer.csrf_ok(session.nonce, request.form.get("csrf")):
            return self.render("error.html", 403, session=None,
                               message="The form expired or did not come from this dashboard. "
                                       "Reload the page and try again.")  # fmt: skip
        if path == PREFIX + "/logout" and method == "POST":
            return Page.redirect(PREFIX + "/login", cookie_header(COOKIE, "", 0))
        allowed = False
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            allowed = True
            if route_method == method:
                return await handler(request, session, match.groupdict())
        if allowed:
            return self.render("error.html", 405, message="Method not allowed.", session=session)
        return self.render("error.html", 404, message="No such page.", session=session)

    # -- login ----------------------------------------------------------------------
    async def _session(self, request: WebRequest) -> Session | None:
        """The request's valid session; an account's key must still be valid."""
        session = self.signer.read(request.cookies.get(COOKIE))
        if session is None or session.is_admin:
            if session is not None and not self.admin_key:
                return None
            return session
        key = await self.pages.store().get_key(session.key_id or "")
        if key is None or key.account_id != session.account_id or key.revoked_at is not None:
            return None
        if key.expires_at is not None and key.expires_at <= time.time():
            return None
        return session

    def _login_page(self, status: int = 200, error: str | None = None) -> Page:
        value, nonce = self.signer.issue_pre()
        page = self.render("login.html", status, error=error, session=None,
                           csrf=self.signer.csrf_token(nonce),
                           admin_enabled=bool(self.admin_key))  # fmt: skip
        page.headers.append(cookie_header(PRE_COOKIE, value, 3600))
        return page

    def _throttled(self, address: str) -> bool:
        """True when ``address`` failed ``LOGIN_FAILURES`` logins within ``LOGIN_WINDOW``."""
        now = time.monotonic()
        recent = [t for t in self._failures.get(address, ()) if now - t < LOGIN_WINDOW]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return len(recent) >= LOGIN_FAILURES

    def _failed(self, address: str) -> Page:
        if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
            self._failures.clear()
        self._failures.setdefault(address, []).append(time.monotonic())
        return self._login_page(401, "That key was not accepted.")

    async def _login(self, request: WebRequest) -> Page:
        if request.method == "GET":
            return self._login_page()
        if request.method != "POST":
            return self.render("error.html", 405, message="Method not allowed.", session=None)
        if self._throttled(request.client):
            return self._login_page(429, "Too many failed logins from this address: "
                                         "wait a few minutes.")
        nonce = self.signer.read_pre(request.cookies.get(PRE_COOKIE))
        if nonce is None or not self.signer.csrf_ok(nonce, request.form.get("csrf")):
            return self._login_page(403, "The login form expired. Please try again.")
        secret = request.form.get("key", "").strip()
        account_id = key_id = None
        if self.admin_key and hmac.compare_digest(secret.encode(), self.admin_key.encode()):
            pass
        else:
            found = await self.pages.store().key_by_hash(hash_key(secret)) if secret else None
            now = time.time()
            if (found is None or found[0].revoked_at is not None or found[1].disabled
                    or (found[0].expires_at is not None and found[0].expires_at <= now)):
                return self._failed(request.client)
            account_id, key_id = found[1].id, found[0].id
        value, _ = self.signer.issue(account_id, key_id)
        max_age = int(self.signer.lifetime)
        return Page.redirect(PREFIX + "/", cookie_header(COOKIE, value, max_age),
                             cookie_header(PRE_COOKIE, "", 0))  # fmt: skip
