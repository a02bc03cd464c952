"""Tenant controls end to end: a real gateway (uvicorn on 127.0.0.1) with billing on a
real SQLite file, the simulated provider, and the official openai SDK / httpx as clients."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.limits.conftest import gateway_config, make_key
from tests.support.servers import run_tollway

MSG = [{"role": "user", "content": "hi"}]


def chat(url: str, key: str, model: str = "echo", **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": MSG, **body}, timeout=30)  # fmt: skip


@pytest.fixture
def sqlite_dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tollway.db'}"


def test_rpm_exact_with_openai_headers(sqlite_dsn: str) -> None:
    _, key_id, key = make_key(sqlite_dsn, key_limits={"rpm": 3})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        answers = [chat(url, key) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    first = answers[0].headers
    assert first["x-ratelimit-limit-requests"] == "3"
    assert first["x-ratelimit-remaining-requests"] == "2"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    refused = answers[3]
    err = refused.json()["error"]
    assert err["type"] == "rate_limit_exceeded" and err["code"] == "key_rpm"
    assert "3 requests per minute" in err["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # 1 request refills in 20 s
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_account_and_model_scopes(sqlite_dsn: str) -> None:
    limits = {"rpm": 100, "per_model": {"echo": {"rpm": 2}}}
    _, _, key1 = make_key(sqlite_dsn, account_limits=limits)
    _, _, key2 = make_key(sqlite_dsn)  # same account: shares the account's counters
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        assert chat(url, key1).status_code == 200
        assert chat(url, key2).status_code == 200
        refused = chat(url, key1)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "account_model_rpm"
        assert "on model echo" in refused.json()["error"]["message"]
        assert chat(url, key2, "slow").status_code == 200  # another model: its own budget


def test_model_access_and_models_list(sqlite_dsn: str) -> None:
    _, _, key = make_key(sqlite_dsn, key_limits={"models": ["ech*"]})
    _, _, other = make_key(sqlite_dsn, account="other", account_limits={"models": ["slow"]})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        assert chat(url, key).status_code == 200
        denied = chat(url, key, "slow")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "model_not_allowed"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key)
        assert [m.id for m in client.models.list()] == ["echo"]
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("slow")
        other_client = openai.OpenAI(base_url=f"{url}/v1", api_key=other)
        assert [m.id for m in other_client.models.list()] == ["slow"]


def test_concurrency_released_on_every_path(sqlite_dsn: str) -> None:
    _, _, key = make_key(sqlite_dsn, key_limits={"max_concurrent": 1})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        # a stream in flight holds the slot
        holder = threading.Thread(target=chat, args=(url, key, "slow"))
        holder.start()
        time.sleep(0.5)
        busy = chat(url, key)
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "key_concurrency"
        holder.join()
        assert chat(url, key).status_code == 200  # released at settlement
        # the upstream failing mid-stream releases it
        with httpx.stream("POST", f"{url}/v1/chat/completions",
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "fail", "messages": MSG, "stream": True}) as r:
            r.read()
        assert chat(url, key).status_code == 200
        # the client disconnecting mid-stream releases it
        with httpx.stream("POST", f"{url}/v1/chat/completions",
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "slow", "messages": MSG, "stream": True}) as r:
            next(r.iter_bytes())
        deadline = time.time() + 5
        while (answer := chat(url, key)).status_code == 429 and time.time() < deadline:
            time.sleep(0.1)
        assert answer.status_code == 200


def test_openai_sdk_retry_honours_retry_after(sqlite_dsn: str) -> None:
    """A slot held by a 2 s stream: the SDK's first try gets 429 with ``retry-after-ms``
    (1 s), it sleeps that long (not its own backoff) and retries until the slot is free."""
    _, _, key = make_key(sqlite_dsn, key_limits={"max_concurrent": 1})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        holder = threading.Thread(target=chat, args=(url, key, "slow"))
        holder.start()
        time.sleep(0.3)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="echo", messages=MSG)  # type: ignore[arg-type]
        assert refused.value.response.headers["retry-after-ms"] == "1000"
        assert refused.value.code == "key_concurrency"
        retrying = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=5)
        started = time.monotonic()
        raw = retrying.chat.completions.with_raw_response.create(
            model="echo", messages=MSG  # type: ignore[arg-type]
        )
        waited = time.monotonic() - started
        holder.join()
    assert raw.http_response.status_code == 200
    assert raw.retries_taken >= 1
    assert 0.9 * raw.retries_taken <= waited < 1.5 * raw.retries_taken + 2  # ~1 s per retry


def test_tpm_counts_prompt_then_output(sqlite_dsn: str) -> None:
    # 50 a minute: the prompt (7 tokens) is taken at admission, the 40 output tokens at
    # the end (2 s later, ~2 tokens refilled): 50 - 7 + 2 - 40 < 7, so the next must wait
    _, _, key = make_key(sqlite_dsn, key_limits={"tpm": 50})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        first = chat(url, key, "slow")
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-tokens"] == "50"
        assert first.headers["x-ratelimit-remaining-tokens"] == "43"
        second = chat(url, key, "slow")
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "key_tpm"


def test_spend_cap_402_and_account_shows_budget(sqlite_dsn: str) -> None:
    # max_tokens 20 reserves ~$0.0088 (20 x $400/M + the prompt); the answer costs $0.0055
    _, _, key = make_key(sqlite_dsn, key_limits={"spend_cap_usd": "0.012",
                                                 "spend_period": "daily"})  # fmt: skip
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        assert chat(url, key, max_tokens=20).status_code == 200
        account = httpx.get(f"{url}/v1/account", headers={"Authorization": f"Bearer {key}"}).json()
        cap = account["spend_caps"]["key"]
        assert cap["period"] == "daily" and cap["cap_usd"] == "0.012000"
        assert cap["reserved_usd"] == "0.000000" and cap["spent_usd"] == "0.005500"
        assert cap["remaining_usd"] == "0.006500" and cap["resets_at"] > time.time()
        refused = chat(url, key, max_tokens=20)  # 0.0055 + 0.0088 > 0.012
        err = refused.json()["error"]
        assert refused.status_code == 402 and err["code"] == "budget_exceeded"
        assert "daily spend cap of $0.012" in err["message"] and "resets" in err["message"]
        assert chat(url, key, max_tokens=5).status_code == 200  # a smaller worst case fits


def test_admin_api_sets_limits_at_run_time(sqlite_dsn: str) -> None:
    _, key_id, key = make_key(sqlite_dsn)
    admin = {"Authorization": "Bearer admin-secret"}
    with run_tollway(gateway_config(sqlite_dsn, admin_key="admin-secret")) as url:
        assert chat(url, key).status_code == 200
        assert "x-ratelimit-limit-requests" not in chat(url, key).headers
        r = httpx.post(f"{url}/admin/keys/{key_id}/limits", headers=admin, json={"rpm": 1})
        assert r.status_code == 200 and r.json()["effective"]["rpm"] == 1
        assert chat(url, key).status_code == 200
        assert chat(url, key).status_code == 429
        bad = httpx.post(f"{url}/admin/keys/{key_id}/limits", headers=admin, json={"rpm": -1})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
        bad = httpx.post(f"{url}/admin/keys/{key_id}/limits", headers=admin, json={"nope": 1})
        assert bad.status_code == 400
        r = httpx.post(f"{url}/admin/keys/{key_id}/limits", headers=admin, json={"rpm": None})
        assert r.json()["stored"] == {}
        assert chat(url, key).status_code == 200
        assert httpx.get(f"{url}/admin/keys/nope/limits", headers=admin).status_code == 404
        assert httpx.get(f"{url}/admin/keys/{key_id}/limits").status_code == 401


def test_config_limits_by_key_name_and_account_name(sqlite_dsn: str) -> None:
    import asyncio

    from tollway.auth import KeyAuthenticator
    from tollway.billing.ledger import create_account
    from tollway.storage import open_storage

    async def setup() -> str:
        store = await open_storage(sqlite_dsn)
        try:
            acct = await create_account(store, "team", credit_usd="10")
            return (await KeyAuthenticator(store).create_key(acct.id, name="ci-bot")).secret
        finally:
            await store.close()

    key = asyncio.run(setup())
    limits = {"keys": {"ci-bot": {"rpm": 1}}, "accounts": {"team": {"models": ["echo"]}}}
    with run_tollway(gateway_config(sqlite_dsn, limits=limits)) as url:
        assert chat(url, key).status_code == 200
        assert chat(url, key).status_code == 429
        assert chat(url, key, "slow").status_code == 403


def test_limit_hits_in_traces_and_metrics(sqlite_dsn: str) -> None:
    _, _, key = make_key(sqlite_dsn, key_limits={"rpm": 1})
    admin = {"Authorization": "Bearer admin-secret"}
    with run_tollway(gateway_config(sqlite_dsn, admin_key="admin-secret")) as url:
        assert chat(url, key, max_tokens=1).status_code == 200
        limited = chat(url, key)
        assert limited.status_code == 429
        deadline = time.time() + 10
        while True:
            metrics = httpx.get(f"{url}/metrics").text
            if 'tollway_rate_limited_total{limit="rpm",scope="key"} 1.0' in metrics:
                break
            assert time.time() < deadline, metrics[-2000:]
            time.sleep(0.1)
        trace_id = limited.headers["x-tollway-request-id"]
        while (t := httpx.get(f"{url}/admin/traces/{trace_id}", headers=admin)).status_code != 200:
            assert time.time() < deadline
            time.sleep(0.1)
        hit = t.json()["limit_hit"]
        assert hit["scope"] == "key" and hit["limit"] == "rpm" and hit["retry_after"] > 0


def test_spend_cap_hit_is_counted(sqlite_dsn: str) -> None:
    _, _, key = make_key(sqlite_dsn, key_limits={"spend_cap_usd": "0.001"})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        assert chat(url, key).status_code == 402
        deadline = time.time() + 10
        want = 'tollway_rate_limited_total{limit="spend_cap",scope="key"} 1.0'
        while want not in httpx.get(f"{url}/metrics").text:
            assert time.time() < deadline
            time.sleep(0.1)


def test_messages_api_is_limited_too(sqlite_dsn: str) -> None:
    """/v1/messages runs the same admission: the anthropic SDK sees Anthropic's 429 and 403."""
    import anthropic

    _, _, key = make_key(sqlite_dsn, key_limits={"rpm": 1, "models": ["echo"]})
    with run_tollway(gateway_config(sqlite_dsn)) as url:
        client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
        raw = client.messages.with_raw_response.create(
            model="echo", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        assert raw.http_response.status_code == 200
        assert raw.http_response.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(model="echo", max_tokens=20,
                                   messages=[{"role": "user", "content": "hi"}])  # fmt: skip
        assert limited.value.response.headers["retry-after"]
        assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(model="slow", max_tokens=20,
                                   messages=[{"role": "user", "content": "hi"}])  # fmt: skip
