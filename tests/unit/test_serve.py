"""``tollway serve``'s arguments and the listening socket, in-process."""

from __future__ import annotations

import socket

import pytest

from tollway.cli import main
from tollway.server import ListenError, listen_socket


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--port", "x"], ["--port", "-1"],
                                  ["--workers", "0"], ["--workers", "two"]])
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str],
                                        ) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *argv])
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_listen_socket_binds_and_names_what_fails() -> None:
    with listen_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port > 0 and sock.get_inheritable()
        sock.listen()
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}: the port is already in use"):
            listen_socket("127.0.0.1", port)
    with pytest.raises(ListenError, match="unknown host"):
        listen_socket("no-such-host.invalid", 0)
    with socket.socket() as probe:  # the failed attempts left nothing bound
        probe.bind(("127.0.0.1", port))
