"""The PII validators' libraries are imported when a candidate first needs them, not
before: a process whose traffic holds no candidate never holds them (≈ 3 MiB)."""

from __future__ import annotations

import subprocess
import sys

_CODE = """
import sys
import tollway.server, tollway.app
from tollway.firewalls import DETECTORS, FirewallBlocked, FirewallSet, apply_body

policy = FirewallSet.from_config().get("strict-block")
apply_body(policy, {"messages": [{"role": "user", "content": "tok " * 500}]}, ())
print("phonenumbers" in sys.modules, "stdnum" in sys.modules)
found = [m.start for m in DETECTORS["phone"].create({}).find("call +1 415 555 2671 now")]
print(found, "phonenumbers" in sys.modules, "stdnum" in sys.modules)
card = [m.start for m in DETECTORS["credit_card"].create({}).find("card 4111 1111 1111 1111")]
print(card, "stdnum" in sys.modules)
"""


def test_pii_libraries_load_on_the_first_candidate() -> None:
    done = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False False", "[5] True False", "[5] True"]
