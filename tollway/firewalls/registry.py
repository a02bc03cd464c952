"""Built-in detector kinds by name, and the group names presets use.

Built-ins register here exactly as an extension would: a ``DetectorSpec`` per
kind. Priority when two detectors match at the same position follows this
order: secrets, PII, custom, injection.
"""

from __future__ import annotations

from tollway.firewalls import custom, injection, pii, secrets
from tollway.firewalls.detector import DetectorSpec

__all__ = ["DETECTORS", "GROUPS", "PRIORITY", "spec_for"]

DETECTORS: dict[str, DetectorSpec] = {
    s.name: s for s in (*secrets.SPECS, *pii.SPECS, *custom.SPECS, *injection.SPECS)
}

PRIORITY: dict[str, int] = {name: i for i, name in enumerate(DETECTORS)}

GROUPS: dict[str, tuple[str, ...]] = {
    "secrets": tuple(n for n, s in DETECTORS.items() if s.category == "secrets"),
    "pii": tuple(n for n, s in DETECTORS.items() if s.category == "pii"),
    "injection": tuple(n for n, s in DETECTORS.items() if s.category == "injection"),
}


def spec_for(key: str) -> DetectorSpec:
    """The spec for a policy key (``custom:<label>`` maps to ``custom``); KeyError if none."""
    return DETECTORS[key.partition(":")[0]]
