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


def _accepted_in_one_iteration(handles: int) -> int:
    """Queue 40 connections on a listening socket, then let a uvloop server listening on
    ``accept_handles(sock, handles)`` run one loop iteration: how many did it accept?"""
    import asyncio
    import socket

    import uvloop

    from tollway.server import accept_handles, listen_socket

    sock = listen_socket("127.0.0.1", 0)
    loop = uvloop.new_event_loop()
    made: list[object] = []

    class Count(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    listeners = accept_handles(sock, handles)
    try:
        servers = [loop.run_until_complete(loop.create_server(Count, sock=h, backlog=128))
                   for h in listeners]  # fmt: skip
        clients = [socket.create_connection(sock.getsockname()[:2]) for _ in range(40)]
        loop.call_soon(loop.stop)  # one iteration: the I/O it polls, then the stop
        loop.run_forever()
        accepted = len(made)
        for server in servers:
            server.close()
        for client in clients:
            client.close()
        return accepted
    finally:
        loop.close()
        for h in listeners:
            h.close()


def test_a_loop_iteration_accepts_a_connection_per_listening_handle() -> None:
    """uvloop accepts one connection per listening handle per iteration: with the server's
    handles, a busy loop takes up to ACCEPTS_PER_ITERATION queued connections at a time."""
    from tollway.server import ACCEPTS_PER_ITERATION

    assert _accepted_in_one_iteration(1) == 1  # what one handle did: 40 a second under load
    assert _accepted_in_one_iteration(ACCEPTS_PER_ITERATION) == ACCEPTS_PER_ITERATION
