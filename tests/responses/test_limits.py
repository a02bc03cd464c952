"""Tenant controls apply to the Responses API and embeddings as to chat: an rpm limit
refuses the next request with OpenAI's 429 (and Responses answers carry x-ratelimit-*)."""

from __future__ import annotations

import openai
import pytest

from tests.billing.test_e2e import PRICES, setup_account
from tests.support.servers import serve_app
from tollway.assembly import create_app
from tollway.config import parse_settings


def test_rpm_limit_applies_to_responses_and_embeddings(dsn: str) -> None:
    _account, key = setup_account(dsn, "5.00")
    settings = parse_settings({
        "database": dsn, "billing": {"enabled": True}, "limits": {"defaults": {"rpm": 2}},
        "providers": {"sim": {"type": "simulated"}},
        "models": {"echo": {"deployments": [{"provider": "sim", "model": "echo",
                                             "prices": PRICES}]}},
    })  # fmt: skip
    with serve_app(create_app(settings)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        raw = c.responses.with_raw_response.create(model="echo", input="one")
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        c.embeddings.create(model="echo", input="two")
        with pytest.raises(openai.RateLimitError) as err:
            c.responses.create(model="echo", input="three")
        assert err.value.body["code"] == "key_rpm"  # type: ignore[index]
        with pytest.raises(openai.RateLimitError):
            c.embeddings.create(model="echo", input="four")
