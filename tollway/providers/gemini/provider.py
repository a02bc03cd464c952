"""Adapter for the Gemini API (``type: gemini``): ``generateContent`` and
``streamGenerateContent?alt=sse`` with an API key (``x-goog-api-key``).

The stream is Server-Sent Events framed with CRLF (``data: <json>\\r\\n\\r\\n``),
with no end marker. An error answer is a plain JSON body even when the
content type says ``text/event-stream``; a 200 answer whose body holds no SSE
event but a JSON error is mapped the same way. ``VertexProvider`` (vertex.py)
reuses everything here with another URL and OAuth2 tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from tollway.chunks import Event, Finish
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.gemini.request import build_generate_request
from tollway.providers.gemini.response import CandidateTranslator, error_from_status
from tollway.providers.pacing import read_chunks
from tollway.providers.sse_decoder import SSEDecoder
from tollway.providers.transport import upstream_events

__all__ = ["DEFAULT_BASE_URL", "GeminiProvider"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
_PEEK_LIMIT = 1 << 16  # bytes kept while looking for an unframed JSON error body


class GeminiProvider:
    """Streams from ``POST {base_url}/models/{model}:streamGenerateContent?alt=sse``."""

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self._session = session
        self._base = self._base_url(config)
        self._headers = {"Content-Type": "application/json", **self._auth(config),
                         **config.headers}

    @staticmethod
    def check_config(config: ProviderConfig) -> None:
        """A Gemini API provider needs its API key."""
        if not config.api_key and not any(h.lower() == "x-goog-api-key" for h in config.headers):
            raise ValueError("a 'gemini' provider needs api_key (a Gemini API key)")

    def _base_url(self, config: ProviderConfig) -> str:
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        if base.endswith(("/v1", "/v1beta", "/v1alpha")):
            return base
        return base + "/v1beta"

    def _auth(self, config: ProviderConfig) -> dict[str, str]:
        return {"x-goog-api-key": config.api_key} if config.api_key else {}

    def model_url(self, model: str, stream: bool) -> str:
        """The endpoint for one call to ``model``."""
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._base}/models/{quote(model, safe='')}:{method}"

    def build_body(self, request: ChatRequest, deployment: DeploymentConfig) -> dict[str, Any]:
        """The upstream JSON for this request and deployment."""
        return build_generate_request(
            request.body,
            request.messages,
            request.tools,
            request.max_output_tokens or deployment.max_output_tokens,
        )

    def stream(self, request: ChatRequest, deployment: DeploymentConfig) -> AsyncIterator[Event]:
        return self._exchange(request, deployment, self._headers)

    def _exchange(
        self, request: ChatRequest, deployment: DeploymentConfig, headers: Mapping[str, str]
    ) -> AsyncIterator[Event]:
        model = deployment.model
        translator = CandidateTranslator(self.name)

        async def read_stream(resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
            async for event in self._read_stream(resp, translator, model):
                yield event

        def read_whole(obj: Any) -> list[Event]:
            if isinstance(obj, list):  # tolerate the JSON-array form
                events = [e for item in obj for e in translator.feed(item, model)]
            elif isinstance(obj, dict):
                events = translator.feed(obj, model)
            else:
                raise UpstreamError(f"provider {self.name!r} sent an unexpected body", status=502)
            if not translator.finished:
                events.append(Finish("stop"))
            return events + translator.final_usage()

        return upstream_events(
            self._session,
            self.model_url(model, request.stream),
            headers,
            lambda: orjson.dumps(self.build_body(request, deployment)),
            deployment,
            self.name,
            stream=request.stream,
            error_from=error_from_status,
            read_stream=read_stream,
            read_whole=read_whole,
        )

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, translator: CandidateTranslator, model: str
    ) -> AsyncIterator[Event]:
        decoder = SSEDecoder()
        loads = orjson.loads
        feed = translator.feed
        peek: bytes | None = b""  # raw bytes until the first SSE event (an unframed error?)
        async for data in read_chunks(resp):
            messages = decoder.decode(data)
            if peek is not None:
                if messages:
                    peek = None
                elif len(peek) < _PEEK_LIMIT:
                    peek += data
            for _name, payload in messages:
                if payload:
                    for event in feed(loads(payload), model):
                        yield event
        for _name, payload in decoder.flush():
            if payload:
                peek = None
                for event in feed(loads(payload), model):
                    yield event
        if peek is not None and peek.lstrip()[:1] in (b"{", b"["):
            raise error_from_status(resp.status, peek, resp.headers, self.name)
        if not translator.finished:
            raise UpstreamError(f"provider {self.name!r} ended the stream early", status=502)
        for event in translator.final_usage():
            yield event

    async def aclose(self) -> None:
        return None
