"""The README's configuration examples are valid configuration (docs stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tollway.config import parse_settings

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)


def test_there_are_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_yaml_example_validates(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "TOLLWAY_ADMIN_KEY", "KEY", "GEMINI_API_KEY",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.setenv(name, "x")
    parse_settings(yaml.safe_load(BLOCKS[index]))
