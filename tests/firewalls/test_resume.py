"""Going on from an earlier request's reading (``joined.Checkpoints``) finds exactly what
reading from the start finds: the same findings, the same refusal of fragmented text, for
any fields, any shared first fields, any edges where states are kept; and only within
one scope (account)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.firewalls.test_property import FRAGMENTS
from tollway.firewalls import FirewallBlocked, FirewallSet, apply_body
from tollway.firewalls.joined import Checkpoints, Resume, TooFragmented, find
from tollway.firewalls.request import reading_order
from tollway.firewalls.segments import segments

POLICIES = FirewallSet.from_config()
PRESETS = ["strict-block", "redact-pii", "monitor"]

fields = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5), st.just("")), max_size=6
).map("".join)


def _outcome(scanner: Any, texts: list[str], budget: tuple[int, int] | None,
             resume: Resume | None = None) -> Any:
    try:
        return find(scanner, texts, budget, resume)
    except TooFragmented:
        return "too fragmented"


@st.composite
def conversation(draw: st.DrawFn) -> tuple[list[str], list[tuple[list[str], set[int], str]]]:
    """A history of fields and requests that each send its first fields (some with one
    field cut in two, two fields joined, or the edge between two moved: the same text,
    other fields), then their own;
    states kept at every edge or at some, in one of two scopes."""
    history = draw(st.lists(fields, min_size=2, max_size=10))
    requests = []
    for _ in range(draw(st.integers(2, 6))):
        texts = history[:draw(st.integers(1, len(history)))]
        change = draw(st.sampled_from(["none", "none", "cut", "join", "move"]))
        if change != "none" and texts:
            j = draw(st.integers(0, len(texts) - 1))
            if change == "cut":
                i = draw(st.integers(0, len(texts[j])))
                texts = [*texts[:j], texts[j][:i], texts[j][i:], *texts[j + 1:]]
            elif change == "join" and j + 1 < len(texts):
                texts = [*texts[:j], texts[j] + texts[j + 1], *texts[j + 2:]]
            elif j + 1 < len(texts):  # the edge between two fields moves: as many fields
                both = texts[j] + texts[j + 1]
                i = draw(st.integers(0, len(both)))
                texts = [*texts[:j], both[:i], both[i:], *texts[j + 2:]]
        texts = texts + draw(st.lists(fields, max_size=3))
        every = draw(st.booleans())
        marks = set(range(len(texts))) if every else draw(
            st.sets(st.integers(0, len(texts)), max_size=4))
        requests.append((texts, marks, draw(st.sampled_from(["a", "b"]))))
    return history, requests


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conversation(), name=st.sampled_from(PRESETS), data=st.data())
def test_going_on_from_a_kept_state_finds_what_reading_from_the_start_finds(
    case: tuple[list[str], list[tuple[list[str], set[int], str]]], name: str, data: Any,
) -> None:
    """Every request read from the start and, with one ``Checkpoints`` for them all, from
    where it may go on: the same findings, or the same refusal (with budgets from tight to
    roomy, so that the work spent before a kept state counts)."""
    scanner = POLICIES.get(name).scanner
    checkpoints = Checkpoints(entries=8)
    for texts, marks, scope in case[1]:
        budget = data.draw(st.one_of(st.none(), st.tuples(
            st.integers(0, 4 * len(texts)), st.integers(0, 3 * sum(map(len, texts)) + 4))))
        expected = _outcome(scanner, texts, budget)
        got = _outcome(scanner, texts, budget, Resume(checkpoints, scope, marks))
        assert got == expected


def _conversation(turns: int) -> dict[str, Any]:
    """Turn ``turns`` of a conversation: every earlier message as it was sent, then the
    next user message."""
    def user(t: int) -> str:
        return f"Ticket {t}: card 4111 1111 1111 1111, call me at +44 20 7946 09"

    messages: list[dict[str, Any]] = []
    for t in range(turns):
        messages.append({"role": "user", "content": user(t)})
        messages.append({"role": "assistant", "content": f"58, or mail bob{t}@example.com?"})
    messages.append({"role": "user", "content": user(turns)})
    return {"model": "m", "messages": messages, "system": "Be brief.",
            "tools": [{"name": "lookup", "description": "Find a ticket by number."}]}


def test_a_conversations_next_request_goes_on_from_the_last_one() -> None:
    """Each turn sends the whole conversation again: from the second turn on, the reading
    goes on after the messages the previous turn sent, and the redacted body and verdicts
    are those of reading from the start (a phone number split over two messages, an
    address, a card in the newest message)."""
    policy = POLICIES.get("redact-pii")
    checkpoints = policy.checkpoints
    for turns in range(1, 8):
        body = _conversation(turns)
        expected = apply_body(policy, copy.deepcopy(body), ("model",))
        before = checkpoints.resumed
        got = apply_body(policy, body, ("model",), scope="acct_1")
        assert got == expected
        assert checkpoints.resumed == before + (turns > 1)
        assert "[REDACTED:phone]" in str(got[0]["messages"])


def test_the_system_prompt_and_tools_are_read_first_and_not_again_next_turn() -> None:
    """Clients send ``system`` and ``tools`` after the messages, unchanged every turn;
    they are read first, so the next turn goes on after them and after all but the last
    of the earlier messages: it reads only what is new (the tail of the previous turn's
    reading and the new messages), not the system prompt and the tools again."""
    policy = FirewallSet.from_config().get("redact-pii")
    checkpoints = policy.checkpoints
    system = "You are the support desk of a large shop. " * 40
    tools = [{"name": f"tool_{i}", "description": f"Look up records of kind {i}. " * 20}
             for i in range(6)]
    context = len(system) + sum(len(t["description"]) for t in tools)
    for turns in range(1, 5):
        body = {**_conversation(turns), "system": system, "tools": tools}
        expected = apply_body(policy, copy.deepcopy(body), ("model",))
        skipped = checkpoints.skipped
        got = apply_body(policy, body, ("model",), scope="acct_ctx")
        assert got == expected
        if turns > 1:  # all but the previous turn's last message: not read again
            earlier = sum(len(m["content"]) for m in body["messages"][:-3])
            assert checkpoints.skipped - skipped == context + earlier


def test_reading_order_puts_what_sets_the_conversation_up_first() -> None:
    segs = segments({"model": "m", "messages": [{"role": "user", "content": "a"}],
                     "system": "b", "metadata": {"x": "c"}, "tools": [{"description": "d"}],
                     "instructions": "e"}, ("model",))
    assert [segs[i].text for i in reading_order(segs)] == ["b", "d", "e", "a", "c"]


def test_one_accounts_reading_is_not_where_another_goes_on_from() -> None:
    policy = FirewallSet.from_config().get("strict-block")
    body = _conversation(3)
    with pytest.raises(FirewallBlocked):  # its states are kept all the same
        apply_body(policy, body, ("model",), scope="acct_a")
    body["messages"] += [{"role": "assistant", "content": "ok"},
                         {"role": "user", "content": "and again"}]
    resumed = policy.checkpoints.resumed
    with pytest.raises(FirewallBlocked):
        apply_body(policy, body, ("model",), scope="acct_b")
    assert policy.checkpoints.resumed == resumed  # another account: from the start
    with pytest.raises(FirewallBlocked):
        apply_body(policy, body, ("model",), scope="acct_a")
    assert policy.checkpoints.resumed == resumed + 1


def test_checkpoints_are_bounded() -> None:
    """At most ``entries`` states and about ``size`` bytes; a state larger than an eighth
    of that is not kept."""
    scanner = POLICIES.get("strict-block").scanner

    def read(checkpoints: Checkpoints, n: int, first: str = "") -> None:
        texts = [f"{first}conversation {n} opens", "and goes on", "then ends"]
        find(scanner, texts, resume=Resume(checkpoints, "s", {0, 1}))

    by_count = Checkpoints(entries=4)
    for n in range(20):
        read(by_count, n)
    assert len(by_count) == 4
    by_size = Checkpoints(entries=1000, size=1 << 14)
    for n in range(200):
        read(by_size, n)
    assert 0 < by_size._held <= 1 << 14 and len(by_size) < 200
    for kept in (by_count, by_size):  # lookups go where states are, and only there
        assert kept.fields() == {state.field for state in kept._states.values()}
        assert sum(kept._fields.values()) == len(kept)
    too_big = Checkpoints(size=1 << 14)
    # a key's header and no end yet: the reading holds all of it back, buffered
    read(too_big, 0, first="-----BEGIN PRIVATE KEY-----\n" + "QUJD" * 500)
    assert len(too_big) == 0
    read(too_big, 0)
    assert len(too_big) == 2
