"""Time-ordered ids: fixed width, unique, and text order is creation order."""

from __future__ import annotations

import os
import re
import sys
import threading
import time

import pytest

from tollway.api.chat import new_request_id
from tollway.ids import ordered_hex, random_bytes, random_hex


def test_request_ids_sort_in_creation_order_and_do_not_repeat() -> None:
    ids = []
    for _ in range(5):
        ids.extend(new_request_id() for _ in range(200))
        time.sleep(0.002)
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # ids of different milliseconds sort by time; within one they share the prefix
    stamps = [i[4:16] for i in ids]
    assert stamps == sorted(stamps)
    assert int(stamps[-1], 16) - int(stamps[0], 16) >= 8  # five sleeps of 2 ms


def test_ordered_hex_is_milliseconds_then_random() -> None:
    before = time.time_ns() // 1_000_000
    value = ordered_hex(10)
    after = time.time_ns() // 1_000_000
    assert len(value) == 32
    assert before <= int(value[:12], 16) <= after
    assert len({ordered_hex(10)[12:] for _ in range(1000)}) == 1000


def test_random_bytes_are_random_and_of_the_length_asked() -> None:
    for n in (1, 10, 12, 32, 256):
        got = random_bytes(n)
        assert isinstance(got, bytes) and len(got) == n
    assert len({random_bytes(16) for _ in range(1000)}) == 1000
    assert re.fullmatch(r"[0-9a-f]{24}", random_hex(12))


@pytest.mark.skipif(not hasattr(os, "getrandom"), reason="os.getrandom is Linux-only")
def test_ids_do_not_hand_the_gil_to_another_thread() -> None:
    """``os.urandom`` lets go of the GIL around its system call: a thread waiting for the
    GIL then runs before the caller's next step (in the server: the event loop waits for
    the trace writer). Ids must not: while this thread makes them, a thread that only runs
    when it holds the GIL never gets to run (switches forced by the interpreter aside,
    which a long switch interval keeps out of the window)."""
    ran = 0
    stop = False
    started = threading.Event()

    def other() -> None:
        nonlocal ran
        started.set()
        while not stop:
            ran += 1

    old = sys.getswitchinterval()
    thread = threading.Thread(target=other, daemon=True)
    try:
        sys.setswitchinterval(0.2)
        thread.start()
        started.wait()
        time.sleep(0.001)  # this thread takes the GIL back; the other now waits for it
        before = ran
        ids = [ordered_hex(10) for _ in range(200)] + [random_hex(12) for _ in range(200)]
        after = ran
        # the check itself: os.urandom lets the other thread count (when it wins the race
        # for the GIL its release starts: within a few hundred calls here)
        for _ in range(100_000):
            os.urandom(1)
            if ran != after:
                break
        counted = ran
    finally:
        stop = True
        sys.setswitchinterval(old)
        thread.join()
    assert len(set(ids)) == 400
    assert after == before
    assert counted > after  # (the test can tell: os.urandom's release was seen)
