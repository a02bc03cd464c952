"""tollway features scenario e turns on, how to detect them, and the API key setup.

A feature is available when its package exists in this checkout and its config
fragment (if any) passes ``tollway check-config``. Unavailable features are skipped
with a note in the output. Adjust ``FEATURES`` when billing, traces and firewalls land.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import tollway_cli, write_config

__all__ = ["FEATURES", "Feature", "detect", "setup_key"]


@dataclass(frozen=True)
class Feature:
    """What turning a feature on means: a module that must exist, config, request fields.

    ``off`` is the config used for every other phase, so a–d measure the bare gateway.
    """

    name: str
    module: str
    config: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    off: dict[str, Any] = field(default_factory=dict)


FEATURES = [
    Feature("billing", "tollway.billing"),
    Feature("traces", "tollway.tracing",
            config={"tracing": {"enabled": True, "metrics": {"enabled": True},
                                "logs": {"enabled": True}}},
            off={"tracing": {"enabled": False, "metrics": {"enabled": False},
                             "logs": {"enabled": False}}}),
    Feature("firewall", "tollway.firewalls", request={"firewall": "strict-block"}),
]


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def detect(workdir: Path, ports: tuple[int, int]) -> tuple[list[Feature], dict[str, str]]:
    """(available features, note per feature)."""
    available, notes = [], {}
    for feat in FEATURES:
        if not _module_exists(feat.module):
            notes[feat.name] = f"skipped: {feat.module} does not exist yet"
            continue
        rejected = ""
        for fragment in (feat.config, feat.off):
            if not fragment:
                continue
            path = write_config(workdir / f"probe-{feat.name}.yaml", ports[0], ports[1], 1,
                                workdir / "probe.db", fragment)
            done = tollway_cli(["check-config", str(path)])
            if done.returncode != 0:
                rejected = ("skipped: config " + json.dumps(fragment) + " rejected: "
                            + (done.stderr or done.stdout).strip()[-200:])
                break
        if rejected:
            notes[feat.name] = rejected
            continue
        available.append(feat)
        notes[feat.name] = "on"
    return available, notes


_KEY = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|tw-[A-Za-z0-9_\-]{8,})\b")


def _find_key(obj: Any) -> str | None:
    if isinstance(obj, dict):
        for name in ("key", "api_key", "secret", "token"):
            if isinstance(obj.get(name), str):
                return str(obj[name])
        for value in obj.values():
            found = _find_key(value)
            if found:
                return found
    return None


def setup_key(config: Path) -> tuple[str, str]:
    """Create the bench account and key if tollway has those commands: (key, note)."""
    if tollway_cli(["keys", "--help"]).returncode != 0:
        return "x", "no `tollway keys` command yet: requests use a dummy key"
    base = ["--config", str(config)]
    made = tollway_cli(["accounts", "create", "bench", "--credit", "1000000", "--json", *base])
    if made.returncode != 0 and "exist" not in (made.stderr + made.stdout).lower():
        raise RuntimeError(f"tollway accounts create failed: {made.stderr or made.stdout}")
    done = tollway_cli(["keys", "create", "bench", "--json", *base])
    if done.returncode != 0:
        raise RuntimeError(f"tollway keys create failed: {done.stderr or done.stdout}")
    try:
        key = _find_key(json.loads(done.stdout))
    except json.JSONDecodeError:
        match = _KEY.search(done.stdout)
        key = match.group(1) if match else None
    if not key:
        raise RuntimeError(f"no key in `tollway keys create` output: {done.stdout[:300]}")
    return key, "account 'bench' with 1,000,000 credit and a key"
