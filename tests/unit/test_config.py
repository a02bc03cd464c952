"""Configuration: validation names the bad key; env interpolation; check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.cli import main
from tollway.config import ConfigError, load_settings, parse_settings

GOOD = """
server: {port: 9000}
providers:
  up: {type: openai, base_url: "http://127.0.0.1:1/v1", api_key: "${TW_TEST_KEY}"}
models:
  m:
    deployments:
      - {provider: up, model: gpt, prices: {input_per_mtok: 1.5, output_per_mtok: 6}}
"""


def test_good_config_with_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_KEY", "sk-x")
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    settings = load_settings(path)
    assert settings.providers["up"].api_key == "sk-x"
    assert str(settings.models["m"].deployments[0].prices.input_per_mtok) == "1.5"
    assert main(["check-config", str(path)]) == 0


def test_missing_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="providers.up.api_key: environment variable TW_TEST_KEY"):
        parse_settings({"providers": {"up": {"type": "openai", "base_url": "http://x",
                                             "api_key": "${TW_TEST_KEY}"}}})
    assert parse_settings({"database": "${TW_TEST_KEY:-sqlite:///x.db}"}).database == "sqlite:///x.db"


@pytest.mark.parametrize(("config", "message"), [
    ({"server": {"prot": 1}}, "server.prot: unknown key"),
    ({"server": {"port": "high"}}, "server.port"),
    ({"providers": {"up": {"type": "nope"}}}, "providers.up.type"),
    ({"providers": {"up": {"type": "openai"}}}, "needs base_url"),
    ({"models": {"m": {"deployments": [{"provider": "ghost", "model": "x"}]}}},
     "models.m.deployments.0.provider: unknown provider 'ghost'"),
    ({"models": {"m": {"deployments": []}}}, "models.m.deployments"),
])
def test_bad_config_names_the_key(config: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(config)
    assert message in str(info.value)


def test_check_config_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: {prot: 1}\n")
    assert main(["check-config", str(path)]) == 2
    assert "server.prot: unknown key" in capsys.readouterr().err
