"""Tollway's own secrets never come back out of an upstream's error (issue 12, item 9)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tests.adversarial.test_redaction import UPSTREAM_KEY, leaks
from tests.support.books import ADMIN, admin_trace
from tests.support.servers import Upstream, run_tollway
from tollway.config import parse_settings
from tollway.errors import UpstreamError
from tollway.routing.redact import MARK, SecretRedactor, configured_secrets

HEADER_SECRET = "hdr-9d8c7b6a5f4e3d2c1b0a"
DB_PASSWORD = "db-pass-7e6d5c4b3a29"


# -- the redactor ---------------------------------------------------------------------

def test_marks_and_short_values() -> None:
    r = SecretRedactor([UPSTREAM_KEY, "short"])
    assert r.text(f"bad key {UPSTREAM_KEY}!") == f"bad key {MARK}!"
    assert r.text(f"got '{UPSTREAM_KEY[:20]}...'") == f"got '{MARK}...'"
    assert r.text("a short word") == "a short word"  # below MIN_SECRET: not a secret
    assert not SecretRedactor([]) and SecretRedactor([]).text("x") == "x"


def test_every_field_of_an_error_is_redacted() -> None:
    err = UpstreamError(f"no: {UPSTREAM_KEY}", code=f"c-{UPSTREAM_KEY}",
                        param=UPSTREAM_KEY, type=f"t {UPSTREAM_KEY}")
    err.headers = {"x-echo": UPSTREAM_KEY}
    SecretRedactor([UPSTREAM_KEY]).error(err)
    assert UPSTREAM_KEY not in repr((err.message, err.code, err.param, err.type, err.headers,
                                     str(err)))


def test_configured_secrets_cover_every_place_a_secret_lives() -> None:
    settings_ = parse_settings({
        "database": f"postgresql://tollway:{DB_PASSWORD}@db.internal/prod",
        "admin_key": ADMIN,
        "providers": {
            "openai": {"type": "openai",
                       "base_url": "https://api.example.com/v1?api-key=qs-secret-123",
                       "api_key": UPSTREAM_KEY,
                       "headers": {"X-Org-Token": HEADER_SECRET,
                                   "anthropic-version": "2023-06-01",
                                   "Authorization": "Bearer bearer-token-abcdef"},
                       "options": {"max_tokens_field": "max_completion_tokens",
                                   "client_secret": "opt-secret-0987"}},
        },
        "tools": {"mcp_servers": {
            "docs": {"command": "python",
                     "env": {"DOCS_TOKEN": "env-token-1234", "PATH": "/usr/bin:/bin:/sbin"}},
            "web": {"url": "https://u:mcp-url-pass@mcp.example.com/mcp",
                    "headers": {"Authorization": "Bearer mcp-header-5678"}},
        }},
        "tracing": {"database": "postgresql://t:trace-db-pw-42@h/t",
                    "otel": {"endpoint": "http://127.0.0.1:4318/v1/traces",
                             "headers": {"x-honeycomb-team": "otel-key-3141"}}},
    })
    found = configured_secrets(settings_)
    for secret in (DB_PASSWORD, ADMIN, UPSTREAM_KEY, HEADER_SECRET, "bearer-token-abcdef",
                   "qs-secret-123", "opt-secret-0987", "env-token-1234", "mcp-url-pass",
                   "mcp-header-5678", "trace-db-pw-42", "otel-key-3141"):
        assert secret in found, secret
    for harmless in ("2023-06-01", "max_completion_tokens", "/usr/bin:/bin:/sbin"):
        assert harmless not in found


# -- end to end -------------------------------------------------------------------------

def _echo(request: web.Request) -> str:
    """What a careless upstream says: everything it was sent."""
    return " ".join(f"{k}={v}" for k, v in request.headers.items())


async def _careless(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    body = await request.json()
    said = _echo(request) + f" admin={ADMIN} db={DB_PASSWORD}"
    how = body["model"]
    if how == "refuses":  # a client error: passed on as it is
        return web.json_response({"error": {"message": f"invalid request: {said}",
                                            "type": f"invalid_request_error {UPSTREAM_KEY}",
                                            "param": said, "code": UPSTREAM_KEY}}, status=400)
    if how == "fails":  # retryable; the last error is the client's
        return web.json_response({"error": {"message": f"overloaded: {said}"}}, status=500)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "u",
             "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]}
    await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    error = {"error": {"message": f"died: {said}", "code": UPSTREAM_KEY[:20]}}
    await resp.write(b"data: " + json.dumps(error).encode() + b"\n\n")
    await resp.write_eof()
    return resp


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("redact") / "traces.db"
    with Upstream(_careless) as upstream:
        deployments = {m: {"deployments": [{"provider": "up", "model": m}]}
                       for m in ("refuses", "fails", "dies")}
        config = {
            "database": f"postgresql://tollway:{DB_PASSWORD}@127.0.0.1:1/unused",
            "tracing": {"database": f"sqlite:///{db}"},
            "admin_key": ADMIN,
            "providers": {"up": {"type": "openai", "base_url": upstream.base_url,
                                 "api_key": UPSTREAM_KEY,
                                 "headers": {"X-Secret-Header": HEADER_SECRET}}},
            "models": deployments,
        }
        with run_tollway(config) as url:
            yield url


SECRETS = (UPSTREAM_KEY, HEADER_SECRET, ADMIN, DB_PASSWORD)


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert not leaks(text, secret), (secret, text)


@pytest.mark.parametrize(("model", "stream", "status"), [
    ("refuses", False, 400), ("refuses", True, 400), ("fails", False, 502),
    ("fails", True, 502), ("dies", True, 200),
])
def test_upstream_errors_reach_no_one_with_our_secrets(
    gateway: str, model: str, stream: bool, status: int
) -> None:
    r = httpx.post(gateway + "/v1/chat/completions", json={
        "model": model, "stream": stream, "include_route_trace": True,
        "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == status, r.text
    assert MARK in r.text  # the upstream's text is there, minus the secrets
    headers = " ".join(f"{k}: {v}" for k, v in r.headers.items())
    trace = admin_trace(gateway, r.headers["x-tollway-request-id"])
    assert trace["error"] is not None and MARK in trace["error"]["message"]
    _assert_clean(r.text, headers, json.dumps(trace))


def test_an_mcp_servers_errors_lose_what_it_was_sent() -> None:
    """A platform tool's upstream (an MCP server) is redacted of its own secrets too."""
    import asyncio
    import sys

    from tollway.tools.config import McpServerConfig
    from tollway.tools.mcp_client import McpServer
    from tollway.tools.registry import ToolError

    token = "mcp-env-token-5d4c3b2a1908"
    server_py = str(Path(__file__).with_name("mcp_echo_server.py"))
    config = McpServerConfig(command=sys.executable, args=[server_py],
                             env={"ECHO_TOKEN": token, "PATH": "/usr/bin:/bin"})

    async def main() -> str:
        server = McpServer("docs", config, 10)
        await server.start()
        try:
            await server.call("login", {})
        except ToolError as exc:
            return str(exc)
        finally:
            await server.close()
        raise AssertionError("the tool did not fail")

    message = asyncio.run(main())
    assert "bad token" in message and MARK in message and not leaks(message, token)


def test_a_huge_error_is_cut_before_it_is_scanned() -> None:
    from tollway.routing.redact import MAX_CHARS

    huge = "x" * 5_000_000 + UPSTREAM_KEY
    out = SecretRedactor([UPSTREAM_KEY]).text(huge)
    assert len(out) < MAX_CHARS + 50 and out.endswith(f"[{len(huge) - MAX_CHARS} more characters]")


def test_a_mark_does_not_complete_a_fragment_with_the_text_beside_it() -> None:
    """A secret with ``]`` in it, then its tail: the first mark's ``]`` and the tail
    would read as a 12-character run of the secret (found by python -m tests.adversarial,
    seed 3014729869); the text is redacted again until nothing is left."""
    from tollway.routing.redact import FRAGMENT

    secret = "000]00000000100"
    out = SecretRedactor([secret]).text(secret + secret[4:])
    runs = {secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
    assert not any(run in out for run in runs)
    assert "0000000" not in out


def test_a_value_within_the_mark_is_not_a_secret_and_does_not_hang() -> None:
    """``REDACTED`` as a configured value would be found in every mark it leaves: it is
    not kept (it used to make the repeated redaction loop forever)."""
    redactor = SecretRedactor(["REDACTED", "EDACTED]", "sk-real-secret-value-123"])
    out = redactor.text("key REDACTED and sk-real-secret-value-123 and EDACTED]")
    assert out == "key REDACTED and [REDACTED] and EDACTED]"
