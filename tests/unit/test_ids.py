"""Time-ordered ids: fixed width, unique, and text order is creation order."""

from __future__ import annotations

import re
import time

from tollway.api.chat import new_request_id
from tollway.ids import ordered_hex


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
