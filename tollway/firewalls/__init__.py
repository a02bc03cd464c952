"""Firewalls: detectors, named policies, request and response enforcement.

Wiring (done by the app)::

    firewalls = FirewallSet.from_config(settings.firewalls)   # once, at start-up
    policy = firewalls.get(name)                               # 400 if unknown
    verdicts = apply_chat_request(policy, ctx.request)         # may raise FirewallBlocked
    stages.append(response_firewall(policy))                   # tollway.firewalls.stage
"""

from tollway.firewalls.config import (
    PRESETS,
    DetectorRule,
    FirewallsConfig,
    PolicyConfig,
    ResponseScope,
)
from tollway.firewalls.detector import Detector, DetectorSpec, Match
from tollway.firewalls.policy import CompiledPolicy, FirewallSet, UnknownFirewall, compile_policy
from tollway.firewalls.registry import DETECTORS, GROUPS
from tollway.firewalls.request import (
    FirewallBlocked,
    apply_body,
    apply_chat_request,
    apply_request,
)
from tollway.firewalls.scanner import Rule, Scanner, ScanResult, StreamFilter

__all__ = [
    "DETECTORS",
    "GROUPS",
    "PRESETS",
    "CompiledPolicy",
    "Detector",
    "DetectorRule",
    "DetectorSpec",
    "FirewallBlocked",
    "FirewallSet",
    "FirewallsConfig",
    "Match",
    "PolicyConfig",
    "ResponseScope",
    "Rule",
    "ScanResult",
    "Scanner",
    "StreamFilter",
    "UnknownFirewall",
    "apply_body",
    "apply_chat_request",
    "apply_request",
    "compile_policy",
]
