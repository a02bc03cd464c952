"""Which APIs a deployment's upstream speaks: ``chat``, ``responses``, ``embeddings``.

A deployment may say it (``apis: [chat, embeddings]``); otherwise the default follows
its provider type: an ``openai`` provider whose base URL is OpenAI's own speaks all
three, another OpenAI-compatible server speaks chat only (it says more if it can),
the ``simulated`` provider speaks chat and embeddings, every other type chat.
Tollway passes a request through to a deployment that speaks its API and translates
(or, where it cannot, refuses) otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from tollway.config import DeploymentConfig, ProviderConfig

__all__ = ["ALL_APIS", "default_apis", "speaks"]

ALL_APIS = ("chat", "responses", "embeddings")


def _openai_host(base_url: str | None) -> bool:
    host = urlsplit(base_url or "").hostname or ""
    return host == "api.openai.com"


def default_apis(provider: ProviderConfig | None) -> tuple[str, ...]:
    """The APIs a deployment of this provider speaks when it does not say."""
    if provider is None:
        return ("chat",)
    if provider.type == "openai" and _openai_host(provider.base_url):
        return ALL_APIS
    if provider.type == "simulated":
        return ("chat", "embeddings")
    return ("chat",)


def speaks(
    deployment: DeploymentConfig, providers: Mapping[str, ProviderConfig], api: str
) -> bool:
    """Whether ``deployment``'s upstream speaks ``api`` natively."""
    apis = deployment.apis
    if apis is None:
        apis = default_apis(providers.get(deployment.provider))  # type: ignore[assignment]
    return api in apis  # type: ignore[operator]
