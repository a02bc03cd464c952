"""``python -m bench.firewall`` reads the recorded streams and measures every preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.firewall import main, recorded_pieces


def test_it_measures_every_preset_on_recorded_text(
    conformance_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    streams = recorded_pieces(conformance_dir)
    assert len(streams) >= 5 and all(streams)
    assert any(" " in piece for stream in streams for piece in stream)  # real text
    assert main(["--conformance", str(conformance_dir), "--passes", "1"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    for preset in ("strict-block", "redact-pii", "monitor"):
        recorded, bench = (float(x) for x in rows[preset])
        assert recorded > 0 and bench > 0


def test_no_recordings_is_an_error(tmp_path: Path) -> None:
    assert main(["--conformance", str(tmp_path), "--passes", "1"]) == 1
