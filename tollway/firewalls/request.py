"""The request side: scan every string the upstream will read before it goes upstream.

What is read (``segments.py``): every string of the outgoing body, fields
tollway does not know included, minus exact enum words, field-name keys and
base64 payloads. Text fields are read as one text (those of ``system``,
``instructions``, ``tools`` and ``functions`` first, as models read a prompt, then the
others in body order), so a secret split over text parts, messages or fields is found
as if it were one string (``joined.py``);
identifiers (ids, names, URLs, keys) are scanned one by one. Adapters may move
``system``/``developer`` messages together (Anthropic's ``system``), so their texts
are also read in that order.

``block`` raises ``FirewallBlocked`` (400, ``content_filter``) naming the
detectors and the field, never the text; ``redact`` returns a copy where every
finding reads ``[REDACTED:<type>]`` (a finding over several fields: the tag in the
first, the rest removed); the input is never mutated.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tollway.errors import ContentBlocked
from tollway.firewalls.joined import Finding, Resume, TooFragmented, find
from tollway.firewalls.policy import CompiledPolicy
from tollway.firewalls.scanner import Scanner
from tollway.firewalls.segments import Segment, param_of, rebuild, segments

if TYPE_CHECKING:
    from tollway.providers.base import ChatRequest

__all__ = [
    "FirewallBlocked",
    "Verdict",
    "apply_body",
    "apply_chat_request",
    "apply_request",
    "merge_verdicts",
    "reading_order",
    "verdicts_for",
]

Verdict = dict[str, Any]
_Piece = tuple[int, int, int]  # segment index, start, end within its text
_FRAGMENTED: Verdict = {"detector": "too_fragmented", "action": "block", "where": "request",
                        "count": 1}


class FirewallBlocked(ContentBlocked):
    """Blocked by a firewall policy; ``verdicts`` says which detectors, never the text."""

    def __init__(self, message: str, verdicts: list[Verdict], param: str = "messages") -> None:
        super().__init__(message, param=param)
        self.verdicts = verdicts


def verdicts_for(scanner: Scanner, counts: dict[str, int], where: str) -> list[Verdict]:
    """Verdict dicts ``{detector, action, where, count}`` in rule order."""
    out: list[Verdict] = []
    if not counts:  # the common case: nothing found
        return out
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


class _Findings:
    """Findings of several readings, as pieces of segments, with per-rule counts."""

    def __init__(self, scanner: Scanner, order: list[int] | None = None) -> None:
        self.scanner = scanner
        self.order = order  # the segments' reading order, when the readings followed it
        self.found: list[tuple[int, int, tuple[_Piece, ...]]] = []  # rule, cuts, pieces
        self.counts: dict[str, int] = {}

    def read(self, order: list[int], segs: list[Segment], keep: list[int] | None = None,
             resume: Resume | None = None) -> None:
        """Scan the segments ``order`` as one text. With ``keep`` (offsets in that text),
        only findings across one of those offsets are taken. ``resume``: see ``find``."""
        texts = [segs[i].text for i in order]
        hits = find(self.scanner, texts, resume=resume)
        if not hits:
            return
        starts = []
        at = 0
        for t in texts:
            starts.append(at)
            at += len(t)
        if keep is not None:
            hits = [h for h in hits if any(h[0] < k < h[1] for k in keep)]
        self._count(hits)
        for s, e, rule, left, right in hits:
            cuts = (left >= 0) + (right >= 0)
            k = bisect_right(starts, s) - 1
            pieces: list[_Piece] = []
            while k < len(order) and starts[k] < e:
                lo = max(s - starts[k], 0)
                hi = min(e - starts[k], len(texts[k]))
                if hi > lo:
                    pieces.append((order[k], lo, hi))
                k += 1
            self.found.append((rule, cuts, tuple(pieces)))

    def _count(self, hits: list[Finding]) -> None:
        """One count per rule and group of overlapping findings of that rule."""
        rules = self.scanner.rules
        ends: dict[int, int] = {}
        for s, e, rule, _left, _right in hits:  # sorted by start
            if s >= ends.get(rule, -1):
                name = rules[rule].detector.name
                self.counts[name] = self.counts.get(name, 0) + 1
            ends[rule] = max(ends.get(rule, -1), e)


def _system_order(segs: list[Segment], body: dict[str, Any], text: list[int]) -> list[int]:
    """Text segments of system and developer messages, in order."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    out = []
    for i in text:
        path = segs[i].path
        if len(path) >= 2 and path[0] == "messages" and isinstance(path[1], int):
            msg = messages[path[1]]
            if isinstance(msg, dict) and msg.get("role") in ("system", "developer"):
                out.append(i)
    return out


_CONTEXT = frozenset(("system", "instructions", "tools", "functions"))
"""Top-level fields that set a conversation up: read before the rest (``reading_order``)."""


def reading_order(segs: list[Segment]) -> list[int]:
    """The text segments in the order they are read as one text: those of the fields that
    set the conversation up (``_CONTEXT``) first, then the others, each in body order.

    Models read a prompt so (the tools and the system prompt, then the messages), and a
    conversation's requests repeat those fields unchanged while clients send them after
    the messages (Claude Code, the SDKs): read first, they are a prefix the next request's
    reading goes on from (``joined.Resume``) instead of being read again each turn."""
    context: list[int] = []
    rest: list[int] = []
    for i, s in enumerate(segs):
        if not s.word:
            (context if s.path[0] in _CONTEXT else rest).append(i)
    return context + rest


def _marks(segs: list[Segment], text: list[int]) -> set[int]:
    """Where the text fields' reading keeps its state for a later request with the same
    fields up to there (``joined.Resume``): after the last field of each top-level field
    of the body (``messages``, ``system``, ``tools``…: a conversation's next request
    sends the same messages and more after them) and before the last field."""
    marks = {len(text) - 2}
    for n in range(len(text) - 1):
        if segs[text[n]].path[:1] != segs[text[n + 1]].path[:1]:
            marks.add(n)
    return marks


def _scan(
    scanner: Scanner, body: dict[str, Any], segs: list[Segment], policy: CompiledPolicy,
    scope: str | None,
) -> _Findings:
    text = reading_order(segs)
    found = _Findings(scanner, text)
    found.read(text, segs, resume=None if scope is None or len(text) < 2 else Resume(
        policy.checkpoints, scope, _marks(segs, text)))
    system = _system_order(segs, body, text)
    if len(system) > 1:  # read together by adapters that gather them: junctions only
        position = {seg: n for n, seg in enumerate(text)}
        junctions, at = [], 0
        for before, after in zip(system, system[1:], strict=False):
            at += len(segs[before].text)
            if position[after] != position[before] + 1:
                junctions.append(at)
        if junctions:
            found.read(system, segs, keep=junctions)
    for i, one in enumerate(segs):
        if one.word:
            found.read([i], segs)
    return found


def _redacted(scanner: Scanner, segs: list[Segment], found: _Findings) -> dict[int, str]:
    """New texts of the segments a redaction touches. Overlapping redact findings form one
    region; it reads as one tag where it starts in reading order (named by its finding with
    the fewest cuts, then the first read, then by rule priority) and the rest of it is
    removed."""
    redact = [r.action == "redact" for r in scanner.rules]
    items = [f for f in found.found if redact[f[0]]]
    if not items:
        return {}
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_seg: dict[int, list[tuple[int, int, int]]] = {}
    for n, (_rule, _cuts, pieces) in enumerate(items):
        for seg, lo, hi in pieces:
            by_seg.setdefault(seg, []).append((lo, hi, n))
    for spans in by_seg.values():
        spans.sort()
        end, owner = -1, -1
        for lo, hi, n in spans:
            if lo < end:
                parent[root(n)] = root(owner)
            if hi > end:
                end, owner = hi, n
    # where a piece starts, in reading order (a finding's pieces are listed so; segment
    # indices are body order, and the tools and the system prompt are read first)
    order = found.order if found.order is not None else reading_order(segs)
    rank = {seg: n for n, seg in enumerate(order)}
    label: dict[int, tuple[int, int, int, int]] = {}
    start: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
    for n, (rule, cuts, pieces) in enumerate(items):
        r, first = root(n), pieces[0][:2]
        read_at = (rank.get(first[0], len(segs) + first[0]), first[1])
        key = (cuts, *read_at, rule)
        if r not in label or key < label[r]:
            label[r] = key
        if r not in start or read_at < start[r][0]:
            start[r] = (read_at, first)
    tags = [f"[REDACTED:{rule.detector.name}]" for rule in scanner.rules]
    new: dict[int, str] = {}
    for seg, spans in by_seg.items():
        text = segs[seg].text
        out, at, k = [], 0, 0
        while k < len(spans):
            lo, hi, n = spans[k]
            k += 1
            while k < len(spans) and spans[k][0] < hi:
                hi = max(hi, spans[k][1])
                k += 1
            out.append(text[at:lo])
            r = root(n)
            first_seg, first_lo = start[r][1]
            if first_seg == seg and lo <= first_lo < hi:  # the region's first text read
                out.append(tags[label[r][3]])
            at = hi
        out.append(text[at:])
        new[seg] = "".join(out)
    return new


def apply_body(
    policy: CompiledPolicy, body: dict[str, Any], skip: Iterable[str] = (),
    *, scope: str | None = None,
) -> tuple[dict[str, Any], list[Verdict]]:
    """Scan every string of ``body`` (top-level fields in ``skip`` aside); return the body
    to send (``body`` itself when nothing changed) and the verdicts. Raises
    ``FirewallBlocked`` if a block rule matched. With a ``scope`` (the account: who may
    go on from whose reading), the text fields' reading goes on from where an earlier
    body with the same first fields left it (``joined.Resume``): the same findings."""
    if not policy.on_request:
        return body, []
    scanner = policy.scanner
    segs = segments(body, skip)
    if not segs:
        return body, []
    try:
        found = _scan(scanner, body, segs, policy, scope)
    except TooFragmented:
        if not policy.monitor_only:  # what cannot be read in full does not go upstream
            raise FirewallBlocked(
                f"request blocked by firewall {policy.name!r}: its text is split into too "
                "many fields to inspect", [dict(_FRAGMENTED)],
            ) from None
        found = _Findings(scanner)  # monitoring only: each field on its own
        for i in range(len(segs)):
            found.read([i], segs)
    verdicts = verdicts_for(scanner, found.counts, "request")
    blocked = [(rule, pieces) for rule, _c, pieces in found.found
               if scanner.rules[rule].action == "block"]
    if blocked:
        names = list(dict.fromkeys(
            r.detector.name for i, r in enumerate(scanner.rules) if any(b[0] == i for b in blocked)
        ))
        first = min(blocked, key=lambda b: b[1][0][0])
        raise FirewallBlocked(
            f"request blocked by firewall {policy.name!r}: {', '.join(names)}", verdicts,
            param_of(segs[first[1][0][0]]),
        )
    new = _redacted(scanner, segs, found)
    return (rebuild(body, segs, new) if new else body), verdicts


def apply_request(
    policy: CompiledPolicy, messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Verdict]]:
    """``apply_body`` for a list of messages alone (e.g. a tool result)."""
    body, verdicts = apply_body(policy, {"messages": messages})
    return body["messages"], verdicts


def apply_chat_request(
    policy: CompiledPolicy, request: ChatRequest, scope: str | None = None
) -> list[Verdict]:
    """Scan what the upstream will receive for ``request``: its body with the messages and
    tools the pipeline holds (``model`` aside: the deployment's replaces it). A redaction
    replaces ``request.body``, ``messages`` and ``tools``; nothing is mutated in place.

    A request that came in as an Anthropic Messages body (``request.anthropic``) is
    scanned in that body, every block type included; a redaction replaces it and the
    chat translation is made again from the redacted body. ``scope``: see ``apply_body``."""
    native = request.anthropic
    if native is not None:  # inbound /v1/messages: its body is what the rest derives from
        return _apply_native(policy, request, native.body, scope)
    body = dict(request.body)
    body["messages"] = request.messages
    if request.tools is not None:
        body["tools"] = request.tools
    new, verdicts = apply_body(policy, body, skip=("model",), scope=scope)
    if new is not body:
        request.body = new
        request.messages = new["messages"]
        if request.tools is not None:
            request.tools = new["tools"]
    return verdicts


def _apply_native(
    policy: CompiledPolicy, request: ChatRequest, body: dict[str, Any], scope: str | None
) -> list[Verdict]:
    from tollway.wire.anthropic_in import to_chat

    new, verdicts = apply_body(policy, body, skip=("model",), scope=scope)
    if new is not body:
        assert request.anthropic is not None
        request.anthropic.body = new
        chat = to_chat(new, request.model)
        request.body, request.messages, request.tools = chat.body, chat.messages, chat.tools
        request.anthropic.chat_messages = len(chat.messages)
        request.anthropic.chat_tools = len(chat.tools or ())
    return verdicts
