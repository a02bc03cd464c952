"""CPU per streamed piece of each firewall preset, on text real providers sent.

``python -m bench.firewall [--conformance DIR] [--passes N]``: the text deltas of the
recorded streams in ``shared/conformance/streams`` (OpenAI-compatible ``delta.content``,
Anthropic ``text_delta``; in file order, so each recording is one stream) go through
each preset's stream filter one piece at a time, as the response stage feeds them, and
this process's CPU per piece is printed; beside it, the same for the bench upstream's
piece (``"tok "``, 50 per stream). The bench's streams repeat one short piece, which
costs the scanner far less than real text does (its per-character tables are warm and
most positions are skipped), so the whole-server figures of ``python -m bench`` e and p
understate what a firewall costs on real traffic; this shows by how much. A last column
reads each recording's text whole, as a response that is not streamed is read: CPU µs
per reply.

Then the request side: each recorded Anthropic request body in
``shared/conformance/anthropic-requests`` (real clients' bodies: Claude Code, SDKs; base64
data and signatures are not text and are skipped by the firewall itself) through each
preset's ``apply_body``, as ``/v1/messages`` scans it before the upstream call; CPU µs per
body and per thousand characters of text, for the largest body and for all of them.

Last, a conversation as chat clients send it (every earlier message again with each
turn; the assistant's messages are the recorded replies, then a system prompt and eight
tools): CPU µs of the request side for turns 10, 40 and 80, read from the start and
going on from where the same account's previous turn left the reading
(``tollway.firewalls.joined.Checkpoints``), as the gateway does.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path
from typing import Any

from tollway.firewalls import FirewallBlocked, FirewallSet, apply_body
from tollway.firewalls.segments import segments

__all__ = ["measure", "measure_requests", "measure_whole", "recorded_bodies",
           "recorded_pieces"]

DEFAULT_CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"
BENCH_STREAM = ["tok "] * 50


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _deltas(event: dict[str, Any]) -> list[str]:
    out = []
    for choice in event.get("choices") or []:
        text = (choice.get("delta") or {}).get("content")
        if isinstance(text, str) and text:
            out.append(text)
    if event.get("type") == "content_block_delta":
        text = (event.get("delta") or {}).get("text")
        if isinstance(text, str) and text:
            out.append(text)
    return out


def recorded_pieces(conformance: Path) -> list[list[str]]:
    """One list of text deltas per recorded stream that has any."""
    streams = []
    for path in sorted((conformance / "streams").glob("*/*.sse")):
        pieces: list[str] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("data:"):
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(event, dict):
                pieces += _deltas(event)
        if pieces:
            streams.append(pieces)
    return streams


def measure(streams: list[list[str]], preset: str, passes: int) -> float:
    """CPU µs per piece: every stream through a fresh filter, ``passes`` times, read as the
    response stage reads a streamed response (a policy that only counts: at its end)."""
    policy = FirewallSet.from_config().get(preset)
    scanner, counts_only = policy.scanner, policy.monitor_only
    pieces = sum(len(s) for s in streams) * passes
    start = _cpu()
    for _ in range(passes):
        for stream in streams:
            f = scanner.stream(counts_only, keep=not counts_only)
            for piece in stream:
                f.feed(piece)
            f.flush()
    return (_cpu() - start) * 1e6 / pieces


def measure_whole(streams: list[list[str]], preset: str, passes: int) -> float:
    """CPU µs per reply: each stream's text read whole, as the response stage reads a
    response that is not streamed (``StreamFilter(whole=True)``), ``passes`` times."""
    scanner = FirewallSet.from_config().get(preset).scanner
    texts = ["".join(s) for s in streams]
    start = _cpu()
    for _ in range(passes):
        for text in texts:
            f = scanner.stream(whole=True)
            f.feed(text)
            f.flush()
    return (_cpu() - start) * 1e6 / (len(texts) * passes)


def recorded_bodies(conformance: Path) -> list[dict[str, Any]]:
    """The recorded Anthropic request bodies that hold any text, largest text first."""
    bodies = []
    for path in sorted((conformance / "anthropic-requests").glob("*.request.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and segments(body, ("model",)):
            bodies.append(body)
    return sorted(bodies, key=lambda b: -_text_chars(b))


def _text_chars(body: dict[str, Any]) -> int:
    return sum(len(s.text) for s in segments(body, ("model",)))


def measure_requests(bodies: list[dict[str, Any]], policy: Any, passes: int) -> float:
    """CPU µs per body: every body through ``policy``'s request side, ``passes`` times."""
    start = _cpu()
    for _ in range(passes):
        for body in bodies:
            try:
                apply_body(policy, body, ("model",))
            except FirewallBlocked:
                pass
    return (_cpu() - start) * 1e6 / (len(bodies) * passes)


def _requests_table(bodies: list[dict[str, Any]], passes: int) -> None:
    largest = bodies[:1]
    chars, total = _text_chars(bodies[0]), sum(map(_text_chars, bodies))
    print(f"\n{len(bodies)} recorded request bodies, {total} characters of text; "  # noqa: T201
          f"the largest {chars}")
    print(f"{'preset':14} {'largest µs':>11} {'µs/1k chars':>12} "  # noqa: T201
          f"{'all µs/body':>12} {'µs/1k chars':>12}")
    for preset in ("strict-block", "redact-pii", "monitor"):
        policy = FirewallSet.from_config().get(preset)
        measure_requests(bodies, policy, 1)  # compile the per-character tables
        one = measure_requests(largest, policy, passes)
        every = measure_requests(bodies, policy, passes)
        print(f"{preset:14} {one:11.1f} {one * 1000 / chars:12.1f} "  # noqa: T201
              f"{every:12.1f} {every * len(bodies) * 1000 / total:12.1f}")


SYSTEM = "You are a careful assistant. Answer briefly and cite sources."


def conversation_body(replies: list[str], turns: int, system: str = SYSTEM) -> dict[str, Any]:
    """Turn ``turns`` of a chat, as clients send it: every earlier message again (the
    assistant's are recorded replies), the next question, then a system prompt and tools."""
    messages: list[dict[str, Any]] = []
    for t in range(turns + 1):
        messages.append({"role": "user", "content": f"Question {t}: please explain part {t} "
                                                    "of the plan, with the numbers."})
        if t < turns:
            messages.append({"role": "assistant", "content": replies[t % len(replies)]})
    tools = [{"name": f"lookup_{i}", "description": f"Look up record kind {i} in the archive "
              "and return its fields.", "input_schema": {"type": "object", "properties": {
                  "id": {"type": "string", "description": "the record id"}}}} for i in range(8)]
    return {"model": "m", "messages": messages,
            "system": system, "tools": tools}


def measure_turn(policy: Any, replies: list[str], turns: int, passes: int,
                 scope: str | None, system: str = SYSTEM) -> float:
    """CPU µs of the request side for turn ``turns`` (with ``scope``: after turn
    ``turns - 1`` was read in that scope, as a conversation's requests come)."""
    body = conversation_body(replies, turns, system)
    total = 0.0
    for n in range(passes):
        if scope is not None:  # a new conversation each pass: only its previous turn read
            _apply(policy, conversation_body(replies, turns - 1, system), f"{scope}{n}")
        start = _cpu()
        _apply(policy, body, None if scope is None else f"{scope}{n}")
        total += _cpu() - start
    return total * 1e6 / passes


def _apply(policy: Any, body: dict[str, Any], scope: str | None) -> None:
    try:
        apply_body(policy, body, ("model",), scope=scope)
    except FirewallBlocked:
        pass


def recorded_system(bodies: list[dict[str, Any]]) -> str:
    """The longest recorded system prompt's text ("" if none)."""
    texts = ["".join(s.text for s in segments({"system": b["system"]})) for b in bodies
             if b.get("system")]  # fmt: skip
    return max(texts, key=len, default="")


def _conversation_table(replies: list[str], passes: int, long_system: str) -> None:
    print("\na conversation's turn N (every earlier message sent again; recorded replies); "  # noqa: T201
          "request side CPU µs")
    print(f"{'preset':14} {'turn':>5} {'characters':>11} {'system':>7} "  # noqa: T201
          f"{'from the start':>15} {'after turn N-1':>15}")
    rows = [(preset, turns, SYSTEM) for preset in ("strict-block", "redact-pii")
            for turns in (10, 40, 80)]
    if len(long_system) > len(SYSTEM):  # as agents send: a long system prompt every turn
        rows += [("strict-block", 40, long_system)]
    for preset, turns, system in rows:
        policy = FirewallSet.from_config().get(preset)
        body = conversation_body(replies, turns, system)
        chars = sum(len(m["content"]) for m in body["messages"])
        measure_turn(policy, replies, turns, 1, None, system)  # compile the tables
        whole = measure_turn(policy, replies, turns, passes, None, system)
        going_on = measure_turn(policy, replies, turns, passes, "bench-", system)
        print(f"{preset:14} {turns:5} {chars:11} {len(system):7} "  # noqa: T201
              f"{whole:15.0f} {going_on:15.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.firewall", description=__doc__)
    ap.add_argument("--conformance", type=Path, default=DEFAULT_CONFORMANCE)
    ap.add_argument("--passes", type=int, default=50)
    args = ap.parse_args(argv)
    streams = recorded_pieces(args.conformance)
    if not streams:
        print(f"no recorded text deltas under {args.conformance}/streams",  # noqa: T201
              file=sys.stderr)
        return 1
    pieces = sum(len(s) for s in streams)
    chars = sum(len(p) for s in streams for p in s)
    head = (f"{len(streams)} recorded streams, {pieces} text deltas, "
            f"{chars / pieces:.1f} characters each on average")
    print(head)  # noqa: T201
    print(f"{'preset':14} {'recorded µs/piece':>18} {'bench upstream µs/piece':>24}"  # noqa: T201
          f" {'whole reply µs':>15}")
    for preset in ("strict-block", "redact-pii", "monitor"):
        measure(streams, preset, 1)  # compile the scanner's per-character tables
        real = measure(streams, preset, args.passes)
        bench = measure([BENCH_STREAM], preset, args.passes * 10)
        measure_whole(streams, preset, 1)  # and those a whole reading uses
        whole = measure_whole(streams, preset, args.passes)
        print(f"{preset:14} {real:18.2f} {bench:24.2f} {whole:15.1f}")  # noqa: T201
    bodies = recorded_bodies(args.conformance)
    if bodies:
        _requests_table(bodies, max(args.passes // 5, 1))
    _conversation_table(["".join(s) for s in streams], max(args.passes // 10, 2),
                        recorded_system(bodies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
