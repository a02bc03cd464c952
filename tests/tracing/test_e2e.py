"""End to end: tollway under uvicorn, the openai SDK, traces read back over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import sim_config
from tests.support.servers import serve_app
from tollway.assembly import create_app, default_plugins
from tollway.config import parse_settings
from tollway.errors import AuthenticationError
from tollway.plugins import Host

ADMIN = "admin-secret"
MESSAGES = [{"role": "user", "content": "Hello traces"}]


@dataclass
class Auth:
    account_id: str
    key_id: str


KEYS = {"sk-alice": Auth("acct_alice", "key_a"), "sk-bob": Auth("acct_bob", "key_b")}


class KeyTable:
    """A plugin: authentication from a fixed table of keys."""

    name = "key-table"

    def register(self, host: Host) -> None:
        host.authenticator(authenticate)


async def authenticate(authorization: str | None) -> Auth:
    """A stand-in for billing's key check, installed through the gateway hook."""
    token = (authorization or "").removeprefix("Bearer ").strip()
    if token not in KEYS:  # unknown or revoked
        raise AuthenticationError("Incorrect API key provided.")
    return KEYS[token]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("e2e") / "tollway.db"
    models = dict(sim_config()["models"])
    models["sim-fallback"] = {"deployments": [
        {"provider": "sim", "model": "error-first"},
        {"provider": "sim", "model": "echo", "name": "sim/echo-backup"},
    ]}
    settings = parse_settings({**sim_config(), "models": models, "admin_key": ADMIN,
                               "database": f"sqlite:///{db}"})
    app = create_app(settings, [*default_plugins(), KeyTable()])
    with serve_app(app) as url:
        yield url


def client(url: str, key: str = "sk-alice") -> OpenAI:
    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def trace(url: str, request_id: str, key: str = "sk-alice", within: float = 1.0) -> Any:
    """Poll GET /v1/traces/{id} until it answers 200, at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        r = httpx.get(f"{url}/v1/traces/{request_id}", headers={"Authorization": f"Bearer {key}"})
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def test_non_streamed_request_has_a_complete_trace(gateway: str) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-echo", messages=MESSAGES)
    completion = raw.parse()
    r = trace(gateway, raw.request_id)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["id"] == raw.request_id == raw.headers["x-request-id"]
    assert t["account_id"] == "acct_alice" and t["key_id"] == "key_a"
    assert "sk-alice" not in r.text
    assert t["model"] == "sim-echo" and t["deployment"] == "sim/echo" and t["stream"] is False
    assert t["status"] == 200 and t["error"] is None and t["finish_reason"] == "stop"
    assert t["usage"]["completion_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert t["timings"]["admitted_ms"] is not None and t["timings"]["total_ms"] > 0
    assert [a["outcome"] for a in t["attempts"]] == ["ok"]


def test_streamed_request_has_a_complete_trace(gateway: str) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-lorem", messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert chunks
    t = trace(gateway, raw.request_id).json()
    assert t["id"] == raw.request_id and t["stream"] is True
    assert t["timings"]["ttft_ms"] is not None and t["timings"]["last_token_ms"] is not None
    assert t["usage"]["completion_tokens"] > 0 and t["client_disconnected"] is False


def test_other_account_gets_404_and_revoked_key_401(gateway: str) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-echo", messages=MESSAGES)
    assert trace(gateway, raw.request_id).status_code == 200
    r = httpx.get(f"{gateway}/v1/traces/{raw.request_id}",
                  headers={"Authorization": "Bearer sk-bob"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "trace_not_found"
    r = httpx.get(f"{gateway}/v1/traces/{raw.request_id}",
                  headers={"Authorization": "Bearer sk-revoked"})
    assert r.status_code == 401
    listed = httpx.get(f"{gateway}/v1/traces", headers={"Authorization": "Bearer sk-bob"}).json()
    assert raw.request_id not in [x["id"] for x in listed["data"]]
    r = httpx.get(f"{gateway}/admin/traces/{raw.request_id}",
                  headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and r.json()["account_id"] == "acct_alice"
    assert httpx.get(f"{gateway}/admin/traces",
                     headers={"Authorization": "Bearer sk-alice"}).status_code == 401


def test_fallback_shows_both_attempts(gateway: str) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-fallback", messages=MESSAGES)
    t = trace(gateway, raw.request_id).json()
    assert [(a["deployment"], a["outcome"]) for a in t["attempts"]] == [
        ("sim/error-first", "error"), ("sim/echo-backup", "ok")]
    assert t["attempts"][0]["status"] == 503 and t["deployment"] == "sim/echo-backup"


def test_disconnected_client_is_flagged(gateway: str) -> None:
    with httpx.stream("POST", gateway + "/v1/chat/completions",
                      headers={"Authorization": "Bearer sk-alice"},
                      json={"model": "sim-slow", "messages": MESSAGES, "stream": True}) as r:
        request_id = r.headers["x-request-id"]
        for n, _line in enumerate(r.iter_lines()):
            if n == 6:
                break
    deadline = time.monotonic() + 3
    while True:
        t = trace(gateway, request_id, within=3).json()
        if t.get("client_disconnected") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert t["client_disconnected"] is True and t["status"] == 499 and t["partial"] is True


def test_list_filters_and_pages_over_http(gateway: str) -> None:
    ids = []
    for _ in range(3):
        raw = client(gateway, "sk-bob").chat.completions.with_raw_response.create(
            model="sim-length", messages=MESSAGES)
        ids.append(raw.request_id)
    assert trace(gateway, ids[-1], key="sk-bob").status_code == 200
    auth = {"Authorization": "Bearer sk-bob"}
    page = httpx.get(f"{gateway}/v1/traces", params={"model": "sim-length", "limit": 2},
                     headers=auth).json()
    assert [x["id"] for x in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    page = httpx.get(f"{gateway}/v1/traces", params={"model": "sim-length", "limit": 2,
                                                     "cursor": page["next_cursor"]},
                     headers=auth).json()
    assert [x["id"] for x in page["data"]] == [ids[0]] and page["has_more"] is False
    bad = httpx.get(f"{gateway}/v1/traces", params={"limit": 500}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def _requests_total(url: str, model: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples
        if s.name == "tollway_requests_total" and s.labels.get("model") == model
    )


def test_metrics_parse_and_move(gateway: str) -> None:
    before = _requests_total(gateway, "sim-reasoner")
    for stream in (False, True):
        response = client(gateway).chat.completions.create(
            model="sim-reasoner", messages=MESSAGES, stream=stream)
        if stream:
            list(response)  # type: ignore[call-overload]
    deadline = time.monotonic() + 1
    while _requests_total(gateway, "sim-reasoner") < before + 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    text = httpx.get(gateway + "/metrics").text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"tollway_requests", "tollway_time_to_first_token_seconds", "tollway_tokens",
            "tollway_inflight_streams", "tollway_traces_written"} <= names
