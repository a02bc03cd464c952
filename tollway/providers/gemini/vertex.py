"""Adapter for Gemini on Vertex AI (``type: vertex``): the Gemini adapter with
Vertex URLs and OAuth2 access tokens from ``google-auth``.

Options: ``project`` (required), ``location`` (default ``us-central1``;
``global`` uses the global endpoint), and the credential: ``credentials_file``
(a service-account JSON key file) or ``credentials_json`` (the same JSON as a
string, e.g. ``${GOOGLE_SA_JSON}``); with neither, Application Default
Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server…). A token
is fetched when first needed and refreshed before it expires, one refresh at a
time, off the event loop. ``google-auth`` is the optional extra
``pip install 'tollway[vertex]'``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from tollway.chunks import Event
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.gemini.provider import GeminiProvider

__all__ = ["SCOPES", "VertexProvider"]

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_MISSING = (
    "a 'vertex' provider needs the google-auth library: pip install 'tollway[vertex]'"
)


def _google_auth() -> Any:
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.service_account
    except ImportError:
        raise ValueError(_MISSING) from None
    return google


class VertexProvider(GeminiProvider):
    """Streams from Vertex AI's ``publishers/google/models/{model}`` endpoints."""

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self._credentials = _load_credentials(config)
        self._refreshing = asyncio.Lock()

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        """Project given, credential readable, google-auth installed."""
        _google_auth()
        if not config.options.get("project"):
            raise ValueError("a 'vertex' provider needs options.project (the GCP project id)")
        path = config.options.get("credentials_file")
        if path is not None and not Path(str(path)).is_file():
            raise ValueError(f"options.credentials_file: no such file {str(path)!r}")
        raw = config.options.get("credentials_json")
        if raw is not None:
            try:
                json.loads(str(raw))
            except ValueError:
                raise ValueError("options.credentials_json is not valid JSON") from None

    def _base_url(self, config: ProviderConfig) -> str:
        project = quote(str(config.options.get("project") or ""), safe="")
        location = str(config.options.get("location") or "us-central1")
        host = (
            "https://aiplatform.googleapis.com/v1"
            if location == "global"
            else f"https://{quote(location, safe='')}-aiplatform.googleapis.com/v1"
        )
        base = (config.base_url or host).rstrip("/")
        return f"{base}/projects/{project}/locations/{quote(location, safe='')}/publishers/google"

    def _auth(self, config: ProviderConfig) -> dict[str, str]:
        return {}  # a fresh bearer token per call, see _token

    def stream(self, request: ChatRequest, deployment: DeploymentConfig) -> AsyncIterator[Event]:
        return self._stream_with_token(request, deployment)

    async def _stream_with_token(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]:
        headers = {**self._headers, "Authorization": f"Bearer {await self._token()}"}
        async for event in self._exchange(request, deployment, headers):
            yield event

    async def _token(self) -> str:
        creds = self._credentials
        if not creds.valid:
            async with self._refreshing:
                if not creds.valid:
                    await asyncio.to_thread(self._refresh)
        return str(creds.token)

    def _refresh(self) -> None:
        google = _google_auth()
        try:
            self._credentials.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.RefreshError as exc:
            raise UpstreamError(
                f"provider {self.name!r}: Google rejected tollway's credentials "
                f"({type(exc).__name__}); this is a gateway configuration error",
                status=502,
                retryable=True,
                misconfigured=True,
                code="upstream_auth_failed",
            ) from None
        except google.auth.exceptions.TransportError:
            raise UpstreamError(
                f"provider {self.name!r}: cannot reach Google's token endpoint", status=502
            ) from None


def _load_credentials(config: ProviderConfig) -> Any:
    google = _google_auth()
    options = config.options
    info: dict[str, Any] | None = None
    if options.get("credentials_json") is not None:
        info = json.loads(str(options["credentials_json"]))
    elif options.get("credentials_file") is not None:
        info = json.loads(Path(str(options["credentials_file"])).read_text(encoding="utf-8"))
    if info is None:
        credentials, _project = google.auth.default(scopes=SCOPES)
        return credentials
    return google.oauth2.service_account.Credentials.from_service_account_info(
        info, scopes=SCOPES
    )
