"""A real tollway with billing, traces and the dashboard; a logged-in dashboard client."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from tests.conftest import sim_config
from tests.support.servers import run_tollway

ADMIN_KEY = "dash-admin-0123456789abcdef"
PRICES = {"input_per_mtok": 1, "output_per_mtok": 2}


def dashboard_config(database: str, **extra: Any) -> dict[str, Any]:
    models = {
        "sim-echo": {"deployments": [{"provider": "sim", "model": "echo", "prices": PRICES}]},
        "sim-lorem": {"deployments": [{"provider": "sim", "model": "lorem", "prices": PRICES,
                                       "options": {"tokens": 12}}]},
    }  # fmt: skip
    return sim_config(database=database, admin_key=ADMIN_KEY, models=models,
                      billing={"enabled": True}, dashboard={"enabled": True},
                      tracing={"enabled": True, "store_bodies": True}, **extra)  # fmt: skip


@dataclass
class Tenant:
    id: str
    name: str
    key: str
    key_id: str


@dataclass
class Gateway:
    url: str
    a: Tenant
    b: Tenant

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {ADMIN_KEY}"})

    def chat(self, tenant: Tenant, text: str, model: str = "sim-echo") -> str:
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=tenant.key, max_retries=0)
        reply = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}])
        return reply.headers["x-tollway-request-id"]


def new_tenant(admin: httpx.Client, name: str, credit: str = "5") -> Tenant:
    account = admin.post("/admin/accounts", json={"name": name, "credit_usd": credit}).json()
    key = admin.post(f"/admin/accounts/{account['id']}/keys", json={"name": "k"}).json()
    return Tenant(account["id"], name, key["key"], key["id"])


@contextmanager
def gateway(database: str) -> Iterator[Gateway]:
    with run_tollway(dashboard_config(database)) as url:
        admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        yield Gateway(url, new_tenant(admin, "alpha"), new_tenant(admin, "beta"))


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser(httpx.Client):
    """An httpx client that logs in through the form, as a browser would."""

    def __init__(self, url: str) -> None:
        super().__init__(base_url=url, follow_redirects=False, timeout=30)

    def csrf(self, path: str) -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        match = CSRF.search(page.text)
        assert match is not None, page.text
        return match.group(1)

    def login(self, key: str) -> httpx.Response:
        token = self.csrf("/dashboard/login")
        return self.post("/dashboard/login", data={"csrf": token, "key": key})


def logged_in(url: str, key: str) -> Browser:
    browser = Browser(url)
    reply = browser.login(key)
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard/", reply.text
    return browser


def wait_for_trace(browser: Browser, request_id: str, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        page = browser.get(f"/dashboard/traces/{request_id}")
        if page.status_code == 200 or time.monotonic() > deadline:
            return page
        time.sleep(0.2)
