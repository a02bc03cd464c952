"""Adapter for Azure OpenAI (``type: azure``): the OpenAI-compatible adapter with
Azure's deployment URLs, ``api-version`` and credentials.

``POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=V``,
where ``deployment`` is the deployment's ``model`` (the Azure deployment name) and
``V`` is ``options.api_version`` (default ``DEFAULT_API_VERSION``). Credentials:
``api_key`` (sent as the ``api-key`` header), or Microsoft Entra ID: options
``tenant_id``, ``client_id`` and ``client_secret`` (the OAuth2 client-credentials
grant for ``https://cognitiveservices.azure.com/.default``; the token is fetched
when first needed and refreshed five minutes before it expires, one refresh at a
time), or a ready ``options.entra_token`` (e.g. ``${AZURE_OPENAI_AD_TOKEN}``).

The stream is OpenAI's, with Azure's additions handled by the OpenAI-compatible
reader: the first chunk has ``"model": ""``, ``choices: []`` and
``prompt_filter_results`` (the served model comes from the first chunk that names
one; the filter results reach the client), choices carry
``content_filter_results``, and a filtered answer ends with
``finish_reason: "content_filter"``. A prompt Azure's content filter rejects is a
400 with ``code: "content_filter"``, returned to the client as it is (not retried
on another deployment).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from tollway.chunks import Event
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.openai_compat import (
    OpenAIProvider,
    error_from_body,
    events_from_completion,
)
from tollway.providers.transport import upstream_events

__all__ = ["DEFAULT_API_VERSION", "ENTRA_SCOPE", "AzureOpenAIProvider"]

DEFAULT_API_VERSION = "2024-10-21"
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
_REFRESH_EARLY = 300.0  # seconds before expiry


class AzureOpenAIProvider(OpenAIProvider):
    """Streams chat completions from one Azure OpenAI resource."""

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        options = config.options
        self._endpoint = (config.base_url or "").rstrip("/")
        self._api_version = str(options.get("api_version") or DEFAULT_API_VERSION)
        self._headers.pop("Authorization", None)  # Azure takes the key in api-key
        if config.api_key:
            self._headers["api-key"] = config.api_key
        self._static_token = options.get("entra_token")
        self._client = (
            (str(options["tenant_id"]), str(options["client_id"]), str(options["client_secret"]))
            if options.get("client_id") else None
        )
        authority = str(options.get("authority") or DEFAULT_AUTHORITY).rstrip("/")
        self._token_url = (
            f"{authority}/{quote(self._client[0], safe='')}/oauth2/v2.0/token"
            if self._client else ""
        )
        self._token: tuple[str, float] | None = None  # (access token, expires at monotonic)
        self._refreshing = asyncio.Lock()

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        """An endpoint, and exactly one kind of credential."""
        OpenAIProvider.check_config(config)
        if not config.base_url:
            raise ValueError(
                "an 'azure' provider needs base_url (https://<resource>.openai.azure.com)"
            )
        options = config.options
        entra = [k for k in ("tenant_id", "client_id", "client_secret") if options.get(k)]
        if entra and len(entra) != 3:
            raise ValueError("Entra ID needs options.tenant_id, client_id and client_secret")
        kinds = bool(config.api_key) + bool(entra) + bool(options.get("entra_token"))
        if kinds != 1:
            raise ValueError(
                "an 'azure' provider needs one credential: api_key, or options.tenant_id / "
                "client_id / client_secret (Entra ID), or options.entra_token"
            )

    def deployment_url(self, deployment: DeploymentConfig) -> str:
        """The chat completions URL of one Azure deployment."""
        version = str(deployment.options.get("api_version") or self._api_version)
        return (
            f"{self._endpoint}/openai/deployments/{quote(deployment.model, safe='')}"
            f"/chat/completions?api-version={quote(version, safe='')}"
        )

    def stream(self, request: ChatRequest, deployment: DeploymentConfig) -> AsyncIterator[Event]:
        if self._client is None and not self._static_token:
            return self._exchange(request, deployment, self._headers)
        return self._stream_with_token(request, deployment)

    async def _stream_with_token(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]:
        headers = {**self._headers, "Authorization": f"Bearer {await self._bearer()}"}
        async for event in self._exchange(request, deployment, headers):
            yield event

    def _exchange(
        self, request: ChatRequest, deployment: DeploymentConfig, headers: dict[str, str]
    ) -> AsyncIterator[Event]:
        return upstream_events(
            self._session,
            self.deployment_url(deployment),
            headers,
            lambda: orjson.dumps(self.build_body(request, deployment)),
            deployment,
            self.name,
            stream=request.stream,
            error_from=error_from_body,
            read_stream=self._read_stream,
            read_whole=events_from_completion,
        )

    async def _bearer(self) -> str:
        if self._static_token:
            return str(self._static_token)
        token = self._token
        if token is None or time.monotonic() >= token[1]:
            async with self._refreshing:
                token = self._token
                if token is None or time.monotonic() >= token[1]:
                    token = self._token = await self._fetch_token()
        return token[0]

    async def _fetch_token(self) -> tuple[str, float]:
        assert self._client is not None
        tenant, client_id, secret = self._client
        form = {"grant_type": "client_credentials", "client_id": client_id,
                "client_secret": secret, "scope": ENTRA_SCOPE}
        misconfigured = UpstreamError(
            f"provider {self.name!r}: Microsoft Entra ID rejected tollway's client "
            "credentials; this is a gateway configuration error",
            status=502, retryable=True, misconfigured=True, code="upstream_auth_failed")
        try:
            async with self._session.post(
                self._token_url, data=form, timeout=aiohttp.ClientTimeout(total=30)
            ) as resp:
                if resp.status in (400, 401, 403):
                    raise misconfigured
                if resp.status >= 300:
                    raise UpstreamError(
                        f"provider {self.name!r}: the Entra ID token endpoint answered "
                        f"HTTP {resp.status}", status=502)
                body: Any = orjson.loads(await resp.read())
        except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
            raise UpstreamError(
                f"provider {self.name!r}: cannot get a token from Entra ID", status=502
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise misconfigured
        try:
            lifetime = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        return body["access_token"], time.monotonic() + max(0.0, lifetime - _REFRESH_EARLY)
