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


def _one(deployment: dict, provider: str = "openai", **top: object) -> dict:
    return {
        "providers": {"up": {"type": provider, "base_url": "http://127.0.0.1:1/v1"}},
        "models": {"m": {"deployments": [{"provider": "up", "model": "x", **deployment}]}},
        **top,
    }


def test_billing_on_and_no_prices_is_an_error_naming_the_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"models\.m\.deployments\.0\.prices: missing"):
        parse_settings(_one({}))
    path = tmp_path / "c.yaml"
    path.write_text(
        "providers: {up: {type: openai, base_url: 'http://127.0.0.1:1/v1'}}\n"
        "models:\n  m:\n    deployments:\n      - {provider: up, model: x, prices: free}\n"
        "      - {provider: up, model: y}\n"
    )
    assert main(["check-config", str(path)]) == 2
    assert "models.m.deployments.1.prices: missing" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="output_per_mtok: Field required"):
        parse_settings(_one({"prices": {"input_per_mtok": 1}}))  # half a price list


def test_free_must_be_said() -> None:
    free = parse_settings(_one({"prices": "free"})).models["m"].deployments[0].prices
    zeros = parse_settings(_one({"prices": {"input_per_mtok": 0, "output_per_mtok": 0}}))
    assert free.is_free and zeros.models["m"].deployments[0].prices.is_free
    off = parse_settings(_one({}, billing={"enabled": False}))  # no billing: no prices needed
    assert off.models["m"].deployments[0].prices.is_free
    with pytest.raises(ConfigError, match="prices"):
        parse_settings(_one({"prices": "cheap"}))


def test_anthropic_needs_its_cache_prices() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(_one({"prices": {"input_per_mtok": 3, "output_per_mtok": 15}},
                            provider="anthropic"))  # fmt: skip
    assert "set cached_input_per_mtok, cache_write_per_mtok, cache_write_1h_per_mtok" in str(
        info.value
    )
    full = {"input_per_mtok": 3, "cached_input_per_mtok": 0.3, "cache_write_per_mtok": 3.75,
            "cache_write_1h_per_mtok": 6, "output_per_mtok": 15}  # fmt: skip
    assert parse_settings(_one({"prices": full}, provider="anthropic"))
    assert parse_settings(_one({"prices": "free"}, provider="anthropic"))


def test_usage_convention_and_price_bounds() -> None:
    dep = parse_settings(_one({"prices": "free", "usage": {"reasoning": "separate"}}))
    assert dep.models["m"].deployments[0].usage.reasoning == "separate"
    with pytest.raises(ConfigError, match="usage.reasoning"):
        parse_settings(_one({"prices": "free", "usage": {"reasoning": "sometimes"}}))
    for bad in ("NaN", "-1", "1e400"):
        with pytest.raises(ConfigError, match="input_per_mtok"):
            parse_settings(_one({"prices": {"input_per_mtok": bad, "output_per_mtok": 1}}))


def test_prices_in_effect_are_kept_per_prices_and_follow_a_copy() -> None:
    """The prices in effect are worked out once per Prices; asking for them changes
    neither equality, hashing nor what is dumped, and a copy with an update works them
    out again from its own fields."""
    from decimal import Decimal

    from tollway.config import Prices

    def make() -> Prices:
        return Prices(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2),
                      cache_write_per_mtok=Decimal(3))

    asked, fresh = make(), make()
    assert (asked.cached_input, asked.cache_write, asked.cache_write_1h,
            asked.highest_input) == (1, 3, 3, 3)
    assert asked == fresh and hash(asked) == hash(fresh)
    assert asked.model_dump() == fresh.model_dump()
    copied = asked.model_copy(update={"cache_write_per_mtok": Decimal(7),
                                      "cached_input_per_mtok": Decimal("0.5")})
    assert (copied.cached_input, copied.cache_write, copied.cache_write_1h,
            copied.highest_input) == (Decimal("0.5"), 7, 7, 7)
    assert asked.highest_input == 3
