"""Vertex AI: service-account tokens from google-auth against a local token endpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from tests.fake_upstream import serve, write_sse
from tests.providers.recordings import CONFORMANCE, gemini_chunks, gemini_expected, summarize
from tests.providers.test_gemini import request
from tollway.chunks import Event
from tollway.config import ConfigError, DeploymentConfig, ProviderConfig, parse_settings
from tollway.errors import UpstreamError
from tollway.providers.gemini.vertex import VertexProvider

RAW = (CONFORMANCE / "streams/gemini/mirascope-gemini25flash-text-thoughtstokens.sse").read_bytes()
DEP = DeploymentConfig(provider="vx", model="gemini-2.5-flash")


def service_account(token_uri: str) -> tuple[dict[str, Any], bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {"type": "service_account", "project_id": "proj-1", "private_key_id": "kid1",
            "private_key": pem, "client_email": "tollway@proj-1.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": token_uri}
    return info, public


def test_service_account_token_reaches_vertex(tmp_path: Path) -> None:
    seen: dict[str, Any] = {"token_calls": 0, "paths": [], "auth": []}
    public: bytes = b""

    async def handler(r: web.Request) -> web.StreamResponse:
        if r.path == "/token":
            form = await r.post()
            claims = jwt.decode(str(form["assertion"]), certs=public)  # signature checked
            assert claims["iss"] == "tollway@proj-1.iam.gserviceaccount.com"
            assert "cloud-platform" in claims["scope"]
            seen["token_calls"] += 1
            return web.json_response({"access_token": f"ya29.token{seen['token_calls']}",
                                      "expires_in": 3600, "token_type": "Bearer"})
        seen["paths"].append((r.path, dict(r.query)))
        seen["auth"].append(r.headers.get("Authorization"))
        return await write_sse(r, RAW)

    async def main() -> list[list[Event]]:
        nonlocal public
        async with serve(handler) as url:
            info, public = service_account(url + "/token")
            path = tmp_path / "sa.json"
            path.write_text(json.dumps(info))
            config = ProviderConfig(type="vertex", base_url=url + "/v1", options={
                "project": "proj-1", "location": "europe-west4", "credentials_file": str(path)})
            VertexProvider.check_config(config)
            async with aiohttp.ClientSession() as session:
                provider = VertexProvider("vx", config, session)
                runs = await asyncio.gather(*[_all(provider.stream(request(), DEP))
                                              for _ in range(3)])
                runs.append(await _all(provider.stream(request(), DEP)))
                return runs

    runs = asyncio.run(main())
    assert seen["token_calls"] == 1  # one refresh shared by concurrent calls, then reused
    assert seen["auth"] == ["Bearer ya29.token1"] * 4
    assert seen["paths"][0] == (
        "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/"
        "gemini-2.5-flash:streamGenerateContent", {"alt": "sse"})
    for events in runs:
        assert summarize(events) == gemini_expected(gemini_chunks(RAW), DEP.model)


async def _all(events: Any) -> list[Event]:
    return [e async for e in events]


def test_rejected_credentials_are_misconfiguration() -> None:
    async def handler(r: web.Request) -> web.Response:
        return web.json_response({"error": "invalid_grant", "error_description": "bad"},
                                 status=400)

    async def main() -> None:
        async with serve(handler) as url:
            info, _ = service_account(url + "/token")
            config = ProviderConfig(type="vertex", base_url=url, options={
                "project": "p", "credentials_json": json.dumps(info)})
            async with aiohttp.ClientSession() as session:
                await _all(VertexProvider("vx", config, session).stream(request(), DEP))

    with pytest.raises(UpstreamError) as info:
        asyncio.run(main())
    assert info.value.misconfigured and info.value.retryable


@pytest.mark.parametrize(("options", "message"), [
    ({}, "needs options.project"),
    ({"project": "p", "credentials_file": "/nonexistent/sa.json"}, "no such file"),
    ({"project": "p", "credentials_json": "{not json"}, "not valid JSON"),
])
def test_config_errors_name_the_problem(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"providers": {"vx": {"type": "vertex", "options": options}}})
    assert "providers.vx" in str(info.value) and message in str(info.value)


def test_missing_google_auth_is_a_clear_config_error() -> None:
    code = (
        "import sys; sys.modules['google.auth'] = None\n"
        "from tollway.config import parse_settings, ConfigError\n"
        "try:\n"
        "    parse_settings({'providers': {'vx': {'type': 'vertex', "
        "'options': {'project': 'p'}}}})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout
    assert "pip install 'tollway[vertex]'" in out and "providers.vx" in out
