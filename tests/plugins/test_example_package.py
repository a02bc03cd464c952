"""The example extension package (``examples/tollway-shout``), installed as a package is:
a provider type, a platform tool source and a plugin, each through its entry point.

Its dist-info (METADATA, entry_points.txt from its ``pyproject.toml``) and its code go
into a temporary directory put on ``sys.path``, which is what ``pip install --target``
leaves (offline, no build backend needed); ``importlib.metadata`` then finds its entry
points exactly as it would in a site-packages. A real gateway serves a request through
its provider, which calls its tool.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.support.servers import run_tollway
from tollway.config import ConfigError, parse_settings
from tollway.providers.registry import known_types

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tollway-shout"


def install(package: Path, target: Path) -> None:
    """Install ``package`` (a pyproject project) into ``target`` as a dist-info + code."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    module = name.replace("-", "_")
    shutil.copytree(package / module, target / module)
    info = target / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = project.get("entry-points", {})
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for group, entries in groups.items()))  # fmt: skip
    (info / "top_level.txt").write_text(module + "\n")


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    install(EXAMPLE, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "tollway_shout"]:
            del sys.modules[name]


def config() -> dict[str, object]:
    return {
        "providers": {"loud": {"type": "shout", "options": {"suffix": "!!"}}},
        "models": {"loud": {"deployments": [{"provider": "loud", "model": "shout-1"}]}},
        "tools": {"sources": {"word_count": {}}},
        "billing": {"enabled": False},
    }


def test_not_installed_its_types_are_unknown() -> None:
    assert "shout" not in known_types()
    with pytest.raises(ConfigError, match="unknown provider type 'shout'"):
        parse_settings(config())


def test_installed_it_serves_a_request_through_its_provider_and_tool(installed: Path) -> None:
    assert {"shout", "simulated", "openai", "anthropic"} <= set(known_types())
    with run_tollway(config()) as url:
        client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="loud", messages=[{"role": "user", "content": "count these four words"}],
            extra_body={"platform_tools": ["word_count"]},
        )  # fmt: skip
        content = reply.choices[0].message.content or ""
        assert content.endswith("4 WORDS!!")  # the tool's answer, shouted by the provider
        assert reply.model_extra == {"shouted": True}  # its plugin's response field
        stream = client.chat.completions.create(
            model="loud", messages=[{"role": "user", "content": "hi there"}], stream=True,
            extra_body={"platform_tools": ["word_count"]},
        )  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.endswith("2 WORDS!!")


def test_installed_its_config_check_runs(installed: Path) -> None:
    bad = config()
    bad["providers"] = {"loud": {"type": "shout", "options": {"suffix": "!" * 11}}}
    with pytest.raises(ConfigError, match="at most 10 characters"):
        parse_settings(bad)
    unknown = config()
    unknown["tools"] = {"sources": {"word_cuont": {}}}
    with pytest.raises(ConfigError, match="unknown tool source 'word_cuont'.*word_count"):
        parse_settings(unknown)


def test_installed_its_provider_passes_the_shared_conformance_suite(installed: Path) -> None:
    """A separately packaged adapter runs the same suite as the built-in ones (#19 item 5)."""
    from tests.providers.conformance import ProviderSuite, Recording, check_recording, running
    from tests.providers.recordings import Expected

    shouted = Expected(model="shout", text="REPLAY!!", finish="stop")
    suite = ProviderSuite("shout", lambda url: {"type": "shout", "options": {"suffix": "!!"}},
                          [Recording("shout", b"", b"", shouted)])
    with running(suite) as url:
        for rec in suite.recordings:
            check_recording(url, rec)
