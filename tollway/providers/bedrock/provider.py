"""Adapter for AWS Bedrock's Converse API (``type: bedrock``).

``POST {endpoint}/model/{modelId}/converse-stream`` (or ``/converse``), signed
with SigV4 by botocore (service ``bedrock``). The stream is
``application/vnd.amazon.eventstream``: binary frames (prelude, headers,
payload, CRC32 of the prelude and of the whole frame) decoded incrementally by
botocore's ``EventStreamBuffer``, which verifies both checksums; a corrupt
frame ends the stream as a broken connection (before the first token, the
router falls back).

Options: ``region`` (required), ``access_key_id`` / ``secret_access_key`` /
``session_token`` (else botocore's credential chain: environment, profile,
container or instance role, resolved off the event loop and refreshed when
they expire). ``api_key`` instead sends a Bedrock API key as a bearer token
(no signing). ``base_url`` overrides ``https://bedrock-runtime.{region}.amazonaws.com``.
botocore is the optional extra ``pip install 'tollway[bedrock]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from tollway.chunks import Event
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.bedrock.request import build_converse_request
from tollway.providers.bedrock.response import (
    ConverseTranslator,
    error_from_exception,
    error_from_status,
    events_from_converse,
)
from tollway.providers.pacing import read_chunks
from tollway.providers.transport import json_body, upstream_events

__all__ = ["BedrockProvider"]

_MISSING = "a 'bedrock' provider needs botocore: pip install 'tollway[bedrock]'"
_KEYS = ("access_key_id", "secret_access_key", "session_token")


def _botocore() -> Any:
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.eventstream
        import botocore.session
    except ImportError:
        raise ValueError(_MISSING) from None
    return botocore


class BedrockProvider:
    """Streams from Bedrock's ConverseStream (or Converse) endpoint."""

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._session = session
        self._botocore = _botocore()
        options = config.options
        self._region = str(options.get("region") or "")
        base = config.base_url or f"https://bedrock-runtime.{self._region}.amazonaws.com"
        self._base = base.rstrip("/")
        self._headers = {"Content-Type": "application/json", **config.headers}
        self._bearer = config.api_key
        self._credentials: Any = None
        if options.get("access_key_id"):
            self._credentials = self._botocore.credentials.Credentials(
                str(options["access_key_id"]), str(options.get("secret_access_key") or ""),
                str(options["session_token"]) if options.get("session_token") else None)
        self._resolving = asyncio.Lock()

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        """botocore installed; a region; keys given in pairs."""
        _botocore()
        options = config.options
        if not options.get("region"):
            raise ValueError("a 'bedrock' provider needs options.region (e.g. us-east-1)")
        if bool(options.get("access_key_id")) != bool(options.get("secret_access_key")):
            raise ValueError("options.access_key_id and options.secret_access_key go together")
        unknown = {k for k in options if k.endswith(("_key", "_key_id", "_token"))} - set(_KEYS)
        if unknown:
            raise ValueError(f"unknown credential option(s): {', '.join(sorted(unknown))}")

    def build_body(self, request: ChatRequest, deployment: DeploymentConfig) -> dict[str, Any]:
        """The upstream JSON for this request and deployment."""
        return build_converse_request(
            request.body, request.messages, request.tools, deployment.model,
            request.max_output_tokens or deployment.max_output_tokens,
        )

    def stream(self, request: ChatRequest, deployment: DeploymentConfig) -> AsyncIterator[Event]:
        return self._signed_exchange(request, deployment)

    async def _signed_exchange(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]:
        model = deployment.model
        method = "converse-stream" if request.stream else "converse"
        url = f"{self._base}/model/{quote(model, safe='')}/{method}"
        # kept (signed, then sent) while the answer streams: of its own size
        body = json_body(self.build_body(request, deployment))
        headers = dict(self._headers)
        if request.stream:
            headers["Accept"] = "application/vnd.amazon.eventstream"
        if self._bearer:
            headers["Authorization"] = f"Bearer {self._bearer}"
        else:
            headers = await self._sign(url, body, headers)
        events = upstream_events(
            self._session,
            URL(url, encoded=True),  # send the path exactly as signed
            headers,
            lambda: body,
            deployment,
            self.name,
            stream=request.stream,
            error_from=error_from_status,
            read_stream=lambda resp: self._read_stream(resp, model),
            read_whole=lambda obj: events_from_converse(obj, model),
        )
        async for event in events:
            yield event

    async def _sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        botocore = self._botocore
        creds = self._credentials
        if creds is None:
            async with self._resolving:
                if self._credentials is None:
                    session = botocore.session.Session()
                    self._credentials = await asyncio.to_thread(session.get_credentials)
                creds = self._credentials
            if creds is None:
                raise UpstreamError(
                    f"provider {self.name!r}: no AWS credentials found; "
                    "this is a gateway configuration error",
                    status=502, retryable=True, misconfigured=True, code="upstream_auth_failed")
        refresh = getattr(creds, "refresh_needed", None)
        if refresh is not None and refresh():
            frozen = await asyncio.to_thread(creds.get_frozen_credentials)
        else:
            frozen = creds.get_frozen_credentials()
        aws = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body, headers=headers)
        botocore.auth.SigV4Auth(frozen, "bedrock", self._region).add_auth(aws)
        return {k: str(v) for k, v in aws.headers.items()}

    async def _read_stream(self, resp: aiohttp.ClientResponse, model: str
                           ) -> AsyncIterator[Event]:
        botocore = self._botocore
        buffer = botocore.eventstream.EventStreamBuffer()
        translator = ConverseTranslator(model)
        feed = translator.feed
        loads = orjson.loads
        try:
            async for data in read_chunks(resp):
                buffer.add_data(data)
                for message in buffer:
                    headers = message.headers
                    kind = headers.get(":message-type", "event")
                    if kind == "event":
                        payload = loads(message.payload) if message.payload else {}
                        for event in feed(str(headers.get(":event-type", "")), payload):
                            yield event
                    elif kind == "exception":
                        body = loads(message.payload) if message.payload else {}
                        if not isinstance(body, dict):
                            body = {}
                        raise error_from_exception(
                            str(headers.get(":exception-type", "")),
                            str(body.get("message") or body.get("Message") or ""), self.name)
                    else:
                        raise error_from_exception(
                            str(headers.get(":error-code", "")),
                            str(headers.get(":error-message", "")), self.name)
        except botocore.eventstream.ParserError as exc:
            raise UpstreamError(
                f"provider {self.name!r} sent a corrupt event-stream frame "
                f"({type(exc).__name__})", status=502) from None
        if not translator.finished:
            raise UpstreamError(f"provider {self.name!r} ended the stream early", status=502)
        for event in translator.final_usage():
            yield event

    async def aclose(self) -> None:
        return None
