"""The billing CLI through ``tollway.cli.main`` (real database, --json output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tollway.cli import main


def run(capsys: pytest.CaptureFixture[str], dsn: str, *argv: str) -> tuple[int, object]:
    code = main([*argv, "--database", dsn, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_cli_round_trip(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, applied = run(capsys, dsn, "db", "upgrade")
    assert code == 0 and applied is not None and applied["applied"][0] == "0001_billing"
    code, account = run(capsys, dsn, "accounts", "create", "acme", "--credit", "12.5")
    assert code == 0 and isinstance(account, dict) and account["balance_usd"] == "12.500000"
    code, key = run(capsys, dsn, "keys", "create", "acme", "--expires", "30d")
    assert code == 0 and isinstance(key, dict) and key["key"].startswith("tw-")
    code, keys = run(capsys, dsn, "keys", "list", "acme")
    assert isinstance(keys, dict) and "key" not in keys["data"][0]
    assert keys["data"][0]["prefix"] == key["key"][:11]
    code, revoked = run(capsys, dsn, "keys", "revoke", key["id"])
    assert isinstance(revoked, dict) and revoked["revoked_at"] is not None
    code, credited = run(capsys, dsn, "credit", "acme", "-2.25", "--note", "refund fix")
    assert isinstance(credited, dict) and credited["account"]["balance_usd"] == "10.250000"
    code, ledger = run(capsys, dsn, "ledger", account["id"])
    assert isinstance(ledger, dict)
    assert [e["kind"] for e in ledger["data"]] == ["adjustment", "credit"]
    code, listed = run(capsys, dsn, "accounts", "list")
    assert isinstance(listed, dict) and listed["data"][0]["name"] == "acme"
    code, report = run(capsys, dsn, "audit")
    assert code == 0 and report == {"ok": True, "violations": []}


def test_cli_audit_fails_on_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["accounts", "create", "a", "--credit", "1", "--database", dsn]) == 0
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute("UPDATE accounts SET balance_micros = 5")
    capsys.readouterr()
    assert main(["audit", "--database", dsn]) == 1
    assert "VIOLATION balance" in capsys.readouterr().out
    assert main(["ledger", "nobody", "--database", dsn]) == 1
    assert "no account 'nobody'" in capsys.readouterr().err


def test_cli_refuses_out_of_range_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad amounts, fees and paging values: a usage error naming the argument, no traceback."""
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["accounts", "create", "a", "--credit", "1", "--database", dsn]) == 0
    capsys.readouterr()
    for argv in (
        ["credit", "a", "NaN"], ["credit", "a", "1e308"], ["credit", "a", "--", "-Infinity"],
        ["credit", "a", "9223372036854.775807"], ["credit", "a", "abc"],
        ["accounts", "create", "b", "--credit", "1e20"],
        ["accounts", "create", "b", "--fee-fraction", "-1"],
        ["accounts", "create", "b", "--fixed-fee", "NaN"],
        ["ledger", "a", "--before", "99999999999999999999"],
        ["ledger", "a", "--limit", "0"],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            main([*argv[:2], "--database", dsn, *argv[2:]])
        assert exit_.value.code == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and "must be" in err, err
    # values the parser accepts but the balance cannot take: exit 1 with a sentence
    assert main(["credit", "a", "999999999.5", "--database", dsn]) == 1
    assert "may not exceed" in capsys.readouterr().err
    assert main(["credit", "a", "--database", dsn, "--", "-2"]) == 1
    assert main(["keys", "create", "a", "--expires", "99999999999d", "--database", dsn]) == 1
    assert main(["audit", "--database", dsn]) == 0
