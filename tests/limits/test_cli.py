"""Limits through the CLI (``tollway.cli.main``, real database of each dialect, --json)."""

from __future__ import annotations

import json

import pytest

from tollway.cli import main


def run(capsys: pytest.CaptureFixture[str], dsn: str, *argv: str) -> tuple[int, object]:
    code = main([*argv, "--database", dsn, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_keys_create_update_list_and_account_limits(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, dsn, "accounts", "create", "acme", "--credit", "10")[0] == 0
    code, key = run(capsys, dsn, "keys", "create", "acme", "--rpm", "60", "--tpm", "100000",
                    "--max-concurrent", "4", "--spend-cap", "5", "--spend-period", "daily")
    assert code == 0 and isinstance(key, dict)
    assert key["limits"] == {"rpm": 60, "tpm": 100000, "max_concurrent": 4,
                             "spend_cap_usd": "5", "spend_period": "daily"}  # fmt: skip
    code, updated = run(capsys, dsn, "keys", "update", key["id"], "--rpm", "none",
                        "--models", "gpt-4o*, echo")  # fmt: skip
    assert code == 0 and isinstance(updated, dict)
    assert "rpm" not in updated["limits"] and updated["limits"]["models"] == ["gpt-4o*", "echo"]
    assert updated["usage"] == {"period": "daily", "spent_usd": "0.000000",
                                "reserved_usd": "0.000000", "remaining_usd": "5.000000"}
    code, listed = run(capsys, dsn, "keys", "list", "acme")
    assert isinstance(listed, dict) and listed["data"][0]["limits"]["tpm"] == 100000
    assert "key" not in listed["data"][0]
    code, account = run(capsys, dsn, "accounts", "limits", "acme", "--tpm", "5000")
    assert code == 0 and isinstance(account, dict) and account["limits"] == {"tpm": 5000}
    code, updated = run(capsys, dsn, "keys", "update", key["id"], "--model-limit", "gpt-4o:rpm=10",
                        "--model-limit", "echo:tpm=500,max_concurrent=2")  # fmt: skip
    assert isinstance(updated, dict) and updated["limits"]["per_model"] == {
        "gpt-4o": {"rpm": 10}, "echo": {"tpm": 500, "max_concurrent": 2}}
    code, updated = run(capsys, dsn, "keys", "update", key["id"], "--model-limit", "echo:rpm=3",
                        "--model-limit", "gpt-4o:none")  # fmt: skip
    assert isinstance(updated, dict) and updated["limits"]["per_model"] == {
        "echo": {"tpm": 500, "max_concurrent": 2, "rpm": 3}}
    code, updated = run(capsys, dsn, "keys", "update", key["id"], "--model-limit", "echo:none")
    assert isinstance(updated, dict) and "per_model" not in updated["limits"]


@pytest.mark.parametrize("flags", [["--rpm", "0"], ["--tpm", "-1"], ["--rpm", "1.5"],
                                   ["--spend-cap", "nan"], ["--spend-cap", "-3"],
                                   ["--spend-period", "hourly"], ["--model-limit", "echo"],
                                   ["--model-limit", "echo:rpm=0"],
                                   ["--model-limit", "echo:burst=3"]])  # fmt: skip
def test_bad_flags_are_refused_before_anything_is_written(
    dsn: str, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    assert run(capsys, dsn, "accounts", "create", "acme")[0] == 0
    with pytest.raises(SystemExit) as exit_:
        main(["keys", "create", "acme", *flags, "--database", dsn])
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err
    code, listed = run(capsys, dsn, "keys", "list", "acme")
    assert isinstance(listed, dict) and listed["data"] == []  # no key was made
