"""The adversarial suite: properties and fuzzing that guard money, firewalls and errors.

Every module here runs in CI with a bounded number of examples. Before a release,
``python -m tests.adversarial --minutes 30`` runs the same tests again and again with
far more examples (and new random seeds) until the time is spent.

Tests size their hypothesis runs with ``examples(n)``: ``n`` in CI, ``n`` times
``TOLLWAY_ADVERSARIAL_SCALE`` in the long run.
"""

from __future__ import annotations

import os

__all__ = ["examples", "scale"]


def scale() -> int:
    """How many times the CI example counts the current run uses (1 in CI)."""
    try:
        return max(1, int(os.environ.get("TOLLWAY_ADVERSARIAL_SCALE", "1")))
    except ValueError:
        return 1


def examples(ci: int) -> int:
    """Hypothesis ``max_examples`` for a test that runs ``ci`` examples in CI."""
    return ci * scale()
