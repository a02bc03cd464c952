"""A billed request leaves no reference cycle: its context is freed when the request ends,
not by the garbage collector (which would walk every dead request's objects)."""

from __future__ import annotations

import gc

import uvloop

from bench.billing_hooks import measure
from tollway.context import RequestContext


def test_a_billed_request_is_freed_without_the_collector() -> None:
    gc.collect()
    gc.disable()
    try:
        uvloop.run(measure(requests=64, batch=8, chunks=5, billing=True))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, RequestContext)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
