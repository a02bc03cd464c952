"""Claude Code's environment, as the README documents it: the anthropic SDK configured by
``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_AUTH_TOKEN`` (bearer) or ``ANTHROPIC_API_KEY``
(x-api-key) alone, sending Claude Code's recorded requests to tollway with billing on."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.messages.support import REQUESTS, anthropic_config, replay
from tests.support.books import books, new_account
from tests.support.servers import Upstream, run_tollway

PRICES = {"input_per_mtok": 3, "cached_input_per_mtok": "0.3", "cache_write_per_mtok": "3.75",
          "cache_write_1h_per_mtok": 6, "output_per_mtok": 15}
CLAUDE_CODE = sorted(REQUESTS.glob("claude-code-*.request.json")) if REQUESTS.is_dir() else []


@pytest.mark.parametrize("variable", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
def test_claude_codes_variables_reach_tollway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    if not CLAUDE_CODE:
        pytest.skip(f"Claude Code request recordings not found in {REQUESTS}")
    dsn = f"sqlite:///{tmp_path}/cc.db"
    account_id, key = new_account(dsn, "dev")
    with Upstream(replay) as up:
        config = anthropic_config(up.base_url, database=dsn, billing={"enabled": True})
        sent = [json.loads(p.read_text()) for p in CLAUDE_CODE]
        for body in sent:  # the aliases Claude Code is told to use (ANTHROPIC_MODEL, …)
            config["models"][body["model"]] = {"deployments": [
                {"provider": "anth", "model": "sdkpy-basic_response", "prices": PRICES}]}
        for model in config["models"].values():
            for deployment in model["deployments"]:
                deployment["prices"] = PRICES
        with run_tollway(config) as url:
            for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
            monkeypatch.setenv(variable, key)
            client = anthropic.Anthropic(max_retries=0)  # configured by the environment only
            for body in sent:
                known = inspect.signature(client.messages.create).parameters
                args: dict[str, Any] = {k: v for k, v in body.items()
                                        if k in known and k != "stream"}
                args["extra_body"] = {k: v for k, v in body.items() if k not in known}
                events = list(client.messages.create(**args, stream=True))
                text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
                assert text == "Hello there!" and events[-1].type == "message_stop"
            counted = client.messages.count_tokens(
                model=sent[0]["model"], messages=sent[0]["messages"])
            assert counted.input_tokens > 0
            wrong = httpx.post(url + "/v1/messages", json=sent[0],
                               headers={"x-api-key": "tw-not-a-key"})
            assert wrong.status_code == 401
            assert wrong.json()["error"]["type"] == "authentication_error"
    _account, entries, violations = books(dsn, account_id)
    assert violations == []
    assert len([e for e in entries if e.entry.kind == "debit"]) == len(sent)
