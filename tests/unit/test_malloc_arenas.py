"""``server.malloc_arena_max``: helper threads share a capped number of glibc arenas.

Each case runs in a fresh interpreter (an arena cap only affects arenas not yet made):
six threads each keep 200 buffers of 5,000 bytes (glibc ``malloc``, not Python's small-
object allocator), and glibc's own ``malloc_info`` counts the heaps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc arenas")

SCRIPT = textwrap.dedent("""
    import ctypes, os, sys, tempfile, threading
    from tollway.server import limit_malloc_arenas

    applied = limit_malloc_arenas(int(sys.argv[1]))
    barrier, keep = threading.Barrier(6), []

    def work():
        barrier.wait()
        keep.append([bytearray(5000) for _ in range(200)])

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    fd, path = tempfile.mkstemp()
    os.close(fd)
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    print(applied, open(path).read().count("<heap nr="))
    os.unlink(path)
""")


def _heaps(count: int, env: dict[str, str] | None = None) -> tuple[str, int]:
    run_env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run_env.update(env or {})
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(count)], capture_output=True,
                         text=True, env=run_env, timeout=60, check=True).stdout.split()
    return out[0], int(out[1])


def test_the_cap_holds_threads_to_two_arenas() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        pytest.skip("not glibc: no arenas to cap")
    assert _heaps(2) == ("True", 2)
    applied, uncapped = _heaps(0)  # 0: glibc's default, an arena per allocating thread
    assert applied == "False" and uncapped > 2


def test_an_environment_setting_wins() -> None:
    assert _heaps(2, {"MALLOC_ARENA_MAX": "4"})[0] == "False"
