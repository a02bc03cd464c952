"""``python -m bench.firewall`` reads the recorded streams and measures every preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.firewall import main, recorded_bodies, recorded_pieces, recorded_system


def test_it_measures_every_preset_on_recorded_text(
    conformance_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    streams = recorded_pieces(conformance_dir)
    assert len(streams) >= 5 and all(streams)
    assert any(" " in piece for stream in streams for piece in stream)  # real text
    assert main(["--conformance", str(conformance_dir), "--passes", "1"]) == 0
    pieces, requests, conversation = capsys.readouterr().out.split("\n\n")
    rows = {line.split()[0]: line.split()[1:] for line in pieces.splitlines()}
    for preset in ("strict-block", "redact-pii", "monitor"):
        recorded, bench, whole = (float(x) for x in rows[preset])
        assert recorded > 0 and bench > 0 and whole > 0
    rows = {line.split()[0]: line.split()[1:] for line in requests.splitlines()}
    assert requests.startswith(f"{len(recorded_bodies(conformance_dir))} recorded request bodies")
    for preset in ("strict-block", "redact-pii", "monitor"):
        assert all(float(x) > 0 for x in rows[preset])
    turns = [line.split() for line in conversation.splitlines()[2:]]
    assert [(row[0], int(row[1])) for row in turns] == [
        (preset, n) for preset in ("strict-block", "redact-pii") for n in (10, 40, 80)
    ] + [("strict-block", 40)]  # with the longest recorded system prompt
    assert int(turns[-1][3]) == len(recorded_system(recorded_bodies(conformance_dir))) > 10_000
    assert all(float(x) > 0 for row in turns for x in row[2:])


def test_request_bodies_are_real_text(conformance_dir: Path) -> None:
    bodies = recorded_bodies(conformance_dir)
    assert len(bodies) >= 5
    assert all("model" in b for b in bodies)  # Anthropic Messages bodies


def test_no_recordings_is_an_error(tmp_path: Path) -> None:
    assert main(["--conformance", str(tmp_path), "--passes", "1"]) == 1
