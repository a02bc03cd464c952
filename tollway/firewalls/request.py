"""The request side: scan every text of a chat request before it goes upstream.

Inspected: string content and ``text`` parts of every message (tool results
included), ``reasoning_content``, ``refusal`` and tool call arguments. ``block``
raises ``FirewallBlocked`` (400, ``content_filter``) naming the detectors, never
the text; ``redact`` returns copies with ``[REDACTED:<type>]``; the input list
is never mutated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollway.errors import ContentBlocked
from tollway.firewalls.policy import CompiledPolicy
from tollway.firewalls.scanner import Scanner

__all__ = ["FirewallBlocked", "Verdict", "apply_request", "merge_verdicts", "verdicts_for"]

Verdict = dict[str, Any]


class FirewallBlocked(ContentBlocked):
    """Blocked by a firewall policy; ``verdicts`` says which detectors, never the text."""

    def __init__(self, message: str, verdicts: list[Verdict]) -> None:
        super().__init__(message, param="messages")
        self.verdicts = verdicts


def verdicts_for(scanner: Scanner, counts: dict[str, int], where: str) -> list[Verdict]:
    """Verdict dicts ``{detector, action, where, count}`` in rule order."""
    out: list[Verdict] = []
    for rule in scanner.rules:
        n = counts.get(rule.detector.name, 0)
        if n:
            out.append({"detector": rule.detector.name, "action": rule.action, "where": where,
                        "count": n})
    return out


def merge_verdicts(into: list[Verdict], new: list[Verdict]) -> None:
    """Add ``new`` to ``into``, summing counts of the same detector, action and place."""
    for v in new:
        for old in into:
            if (old["detector"], old["action"], old["where"]) == (
                v["detector"], v["action"], v["where"]
            ):
                old["count"] += v["count"]
                break
        else:
            into.append(dict(v))


def _scan_message(msg: dict[str, Any], fix: Callable[[str], str]) -> dict[str, Any]:
    new = dict(msg)
    content = msg.get("content")
    if isinstance(content, str):
        new["content"] = fix(content)
    elif isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(
                part.get("text"), str
            ):
                part = {**part, "text": fix(part["text"])}
            parts.append(part)
        new["content"] = parts
    for key in ("reasoning_content", "refusal"):
        if isinstance(msg.get(key), str):
            new[key] = fix(msg[key])
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        new_calls = []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                call = {**call, "function": {**fn, "arguments": fix(fn["arguments"])}}
            new_calls.append(call)
        new["tool_calls"] = new_calls
    return new


def apply_request(
    policy: CompiledPolicy, messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Verdict]]:
    """Scan and redact ``messages``; raise ``FirewallBlocked`` if a block rule matched."""
    if not policy.on_request:
        return messages, []
    scanner = policy.scanner
    counts: dict[str, int] = {}
    blocked: list[str] = []

    def fix(text: str) -> str:
        if not text:
            return text
        result = scanner.scan(text)
        for name, n in result.counts.items():
            counts[name] = counts.get(name, 0) + n
        if result.blocked is not None and result.blocked not in blocked:
            blocked.append(result.blocked)
        return result.text

    new = [_scan_message(m, fix) if isinstance(m, dict) else m for m in messages]
    verdicts = verdicts_for(scanner, counts, "request")
    if blocked:
        raise FirewallBlocked(
            f"request blocked by firewall {policy.name!r}: {', '.join(blocked)}", verdicts
        )
    return new, verdicts
