"""One embeddings call to one deployment: an OpenAI-compatible upstream (pass-through)
or the simulated provider (deterministic vectors, for the demo and tests).

The client's body goes upstream unchanged but for ``model`` (the deployment's) and,
when the deployment sets ``options.embeddings_batch_limit``, ``input`` split into
batches of at most that many items; the answers are joined in order (``index``
renumbered) and their usage summed. ``data`` is passed through as the upstream sent
it: base64 embeddings are never decoded.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import aiohttp
import orjson

from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.openai_compat import error_from_body
from tollway.providers.transport import json_body

__all__ = ["EmbeddingsAnswer", "call_embeddings", "simulated_vector"]

EmbeddingsAnswer = tuple[list[dict[str, Any]], int | None, str | None]
"""(the ``data`` items in input order, prompt tokens reported or None, served model)"""


async def call_embeddings(
    session: aiohttp.ClientSession,
    provider: ProviderConfig,
    provider_name: str,
    deployment: DeploymentConfig,
    body: dict[str, Any],
    inputs: list[str | list[int]],
) -> EmbeddingsAnswer:
    """Every batch of ``inputs`` through ``deployment``; raises ``UpstreamError``."""
    limit = deployment.options.get("embeddings_batch_limit")
    size = limit if isinstance(limit, int) and limit > 0 else len(inputs)
    data: list[dict[str, Any]] = []
    tokens: int | None = 0
    served: str | None = None
    for start in range(0, len(inputs), size):
        batch = inputs[start : start + size]
        whole = size >= len(inputs)  # one call: the client's input exactly as sent
        part = {**body, "model": deployment.model, "input": body["input"] if whole else batch}
        used: int | None
        if provider.type == "simulated":
            items, used, served = _simulated(part, batch, deployment.model)
        else:
            items, used, served = await _post(session, provider, provider_name, deployment, part)
        if len(items) != len(batch):
            raise UpstreamError(
                f"provider {provider_name!r} returned {len(items)} embeddings for "
                f"{len(batch)} inputs", retryable=True,
            )  # fmt: skip
        for i, item in enumerate(sorted(items, key=lambda d: d.get("index", 0))):
            data.append({**item, "index": start + i})
        tokens = None if tokens is None or used is None else tokens + used
    return data, tokens, served


async def _post(
    session: aiohttp.ClientSession,
    provider: ProviderConfig,
    name: str,
    deployment: DeploymentConfig,
    body: dict[str, Any],
) -> tuple[list[dict[str, Any]], int | None, str | None]:
    url = (provider.base_url or "").rstrip("/") + "/embeddings"
    headers = {"Content-Type": "application/json", **provider.headers}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key}"
    timeout = aiohttp.ClientTimeout(total=deployment.timeouts.total)
    async with session.post(url, data=json_body(body), headers=headers,
                            timeout=timeout) as resp:  # fmt: skip
        raw = await resp.read()
        if resp.status >= 400:
            raise error_from_body(resp.status, raw, resp.headers, name)
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"provider {name!r} answered with invalid JSON") from None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise UpstreamError(f"provider {name!r} answered without a 'data' list")
    usage = answer.get("usage")
    used = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    model = answer.get("model")
    return (data, used if type(used) is int and used >= 0 else None,
            model if isinstance(model, str) else None)  # fmt: skip


def simulated_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A deterministic unit-scale vector for an input (same input → same vector)."""
    seed = item.encode() if isinstance(item, str) else orjson.dumps(item)
    out: list[float] = []
    block = b""
    counter = 0
    while len(out) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        counter += 1
        out.extend((b - 127.5) / 127.5 for b in block)
    return [round(v, 6) for v in out[:dimensions]]


def _simulated(
    body: dict[str, Any], batch: list[str | list[int]], model: str
) -> tuple[list[dict[str, Any]], int, str]:
    from tollway import tokens

    dims = body.get("dimensions") or 256
    items: list[dict[str, Any]] = []
    used = 0
    for i, item in enumerate(batch):
        vector = simulated_vector(item, dims)
        used += len(item) if isinstance(item, list) else tokens.count_text(item)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        items.append({"object": "embedding", "index": i, "embedding": embedding})
    return items, used, model
