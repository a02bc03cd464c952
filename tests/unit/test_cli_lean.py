"""What a serving process does not load: the features' commands (``serve``, ``check-config``),
the admin API before its first request, PostgreSQL's batches on SQLite, leases when off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import sim_config

FEATURE_CLI = ["tollway.billing.cli", "tollway.limits.cli", "tollway.tracing.cli",
               "tollway.cli_models"]  # fmt: skip


def _modules_after(args: list[str]) -> tuple[str, list[str]]:
    code = (
        "import sys\n"
        "from tollway import cli\n"
        f"status = cli.main({args!r})\n"
        f"print(status, [m for m in {FEATURE_CLI!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    return done.stdout, done.stderr


def test_check_config_loads_no_feature_command(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(sim_config()))  # JSON is YAML
    out, _ = _modules_after(["check-config", str(config)])
    assert out.splitlines()[-1] == "0 []"


def test_feature_commands_are_there_for_every_other_command() -> None:
    out, _ = _modules_after(["models", "catalog"])
    assert out.splitlines()[-1] == f"0 {FEATURE_CLI!r}"


def test_help_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "tollway", "--help"], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    for command in ("serve", "check-config", "accounts", "keys", "credit", "ledger", "audit",
                    "traces", "models"):
        assert command in done.stdout


def test_billing_plugin_loads_the_admin_api_only_when_asked() -> None:
    code = ("import sys\nimport tollway.billing.plugin, tollway.storage.sql\n"
            "print([m for m in ('tollway.billing.admin_api', 'tollway.billing.audit',"
            " 'tollway.billing.balance_lease', 'tollway.storage.pg_money') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
