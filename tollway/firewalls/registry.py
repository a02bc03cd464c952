"""Detector kinds by name (built-ins, then installed packages'), and the groups presets use.

Built-ins register here exactly as an extension does: a ``DetectorSpec`` per kind.
An installed package adds kinds through the ``tollway.detectors`` entry-point group
(a ``DetectorSpec`` or a sequence of them; see ``tollway.entrypoints``); they come
after the built-ins and cannot replace one. Priority when two detectors match at the
same position follows this order: secrets, PII, custom, injection, installed ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from tollway.entrypoints import entry_points, load
from tollway.firewalls import custom, injection, pii, secrets
from tollway.firewalls.detector import DetectorSpec

__all__ = ["DETECTORS", "GROUP", "GROUPS", "PRIORITY", "installed_specs", "spec_for"]

GROUP = "tollway.detectors"


def installed_specs() -> list[DetectorSpec]:
    """The detector kinds installed packages register, by entry-point name."""
    out: list[DetectorSpec] = []
    for _name, entry in sorted(entry_points(GROUP).items()):
        loaded = load(entry)
        specs: Iterable[object] = [loaded] if isinstance(loaded, DetectorSpec) else loaded
        for spec in specs:
            if not isinstance(spec, DetectorSpec):
                raise RuntimeError(f"entry point {GROUP}:{entry.name} is not a DetectorSpec")
            out.append(spec)
    return out


DETECTORS: dict[str, DetectorSpec] = {
    s.name: s for s in (*secrets.SPECS, *pii.SPECS, *custom.SPECS, *injection.SPECS)
}
for _spec in installed_specs():
    DETECTORS.setdefault(_spec.name, _spec)  # a built-in's name stays the built-in's

PRIORITY: dict[str, int] = {name: i for i, name in enumerate(DETECTORS)}

GROUPS: dict[str, tuple[str, ...]] = {
    "secrets": tuple(n for n, s in DETECTORS.items() if s.category == "secrets"),
    "pii": tuple(n for n, s in DETECTORS.items() if s.category == "pii"),
    "injection": tuple(n for n, s in DETECTORS.items() if s.category == "injection"),
}


def spec_for(key: str) -> DetectorSpec:
    """The spec for a policy key (``custom:<label>`` maps to ``custom``); KeyError if none."""
    return DETECTORS[key.partition(":")[0]]
