"""``python -m bench.billing_hooks`` measures billing's path without HTTP; it must run."""

from __future__ import annotations

import uvloop

from bench.billing_hooks import measure


def test_billing_on_and_off_both_run_and_report_cpu() -> None:
    off = uvloop.run(measure(requests=64, batch=64, chunks=5, billing=False))
    on = uvloop.run(measure(requests=64, batch=64, chunks=5, billing=True))
    assert off > 0 and on > 0
