"""A built-in provider that answers deterministically, for demos, tests and benchmarks.

The behaviour is chosen by the deployment's ``model`` (like TensorZero's dummy
provider); options come from the provider's ``options`` overlaid by the
deployment's ``options``:

==================  =====================================================
model               behaviour
==================  =====================================================
``echo``            "You said: <last user text>" (the default)
``lorem``           ``tokens`` tokens of deterministic filler
``reasoner``        reasoning_content first, then the answer
``tool``            calls a tool (``tool_name`` or the first request tool, with
                    ``arguments``); after ``tool_rounds`` (1) tool results,
                    answers with the last
``refusal``         a refusal
``length``          stops with ``finish_reason: length``
``error-first``     fails before the first token (503, retryable)
``error-midstream`` fails after a few tokens
``hang``            never sends a first token
``hang-midstream``  sends a few tokens, then never another
==================  =====================================================

Like a real upstream it streams one token per chunk (counted with tollway's
tokenizer), answers ``n`` choices, and stops every choice at the output cap it was
sent (``max_output_tokens``), reasoning and tool calls included, with
``finish_reason: length``. Usage is reported as an OpenAI-compatible upstream does
and read with the deployment's usage convention.

Options: ``text`` (the reply, overrides the behaviour's), ``tokens_per_second``
(0: as fast as possible), ``first_token_ms``, ``usage`` (true; false: report none,
so tollway estimates; ``cumulative``: a running usage on every chunk as well),
``tokens`` (for lorem), ``tool_name``, ``arguments``, ``tool_rounds``. To play a
misbehaving or differently-counting provider: ``ignore_cap`` (true: generate the
whole answer whatever the cap), ``extra_output_tokens`` (report this many output
tokens more than were generated), ``reasoning_usage`` (``separate``: reasoning is
reported outside ``completion_tokens``, as xAI does, and does not count against
the cap).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway import tokens
from tollway.chunks import Event, Finish, FinishReason, Start, TextDelta, ToolCallDelta, Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest
from tollway.providers.openai_compat import usage_from_openai

__all__ = ["SimulatedProvider", "token_pieces"]

_WORDS = re.compile(r"\s*\S+")
_LOREM = (
    "tollway meters every token it forwards and writes an auditable ledger entry for "
    "each request so that the cost of a streamed answer is known to the micro dollar"
).split()
_FAIL_AT = 3  # error-midstream / hang-midstream: after this many content chunks

# A plan step: (kind, text, tokens); kind is a channel, "tool" (a tool call's first
# fragment, text = its name) or "args" (more of its arguments).
_Step = tuple[str, str, int]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict)
                )
    return ""


def token_pieces(text: str) -> list[tuple[str, int]]:
    """``text`` as the chunks a token-by-token stream sends: (text, tokens) pairs.

    One token per piece, except where a character's UTF-8 bytes span tokens: those
    tokens travel together (a chunk is always whole characters).
    """
    if not text:
        return []
    enc = tokens.encoding()
    out: list[tuple[str, int]] = []
    pending = b""
    count = 0
    for token in enc.encode(text, disallowed_special=()):
        pending += enc.decode_single_token_bytes(token)
        count += 1
        try:
            piece = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.append((piece, count))
        pending, count = b"", 0
    if pending:
        out.append((pending.decode("utf-8", "replace"), count))
    return out


class SimulatedProvider:
    """Deterministic answers at a configurable pace."""

    def __init__(self, name: str, config: ProviderConfig, session: Any = None) -> None:
        self.name = name
        self._options = dict(config.options)
        if not tokens.loaded():  # it counts every token: load the tokenizer now, off the loop
            threading.Thread(target=tokens.encoding, name="tokenizer-load", daemon=True).start()

    async def aclose(self) -> None:
        return None

    async def stream(
        self, request: ChatRequest, deployment: DeploymentConfig
    ) -> AsyncIterator[Event]:
        opts = {**self._options, **deployment.options}
        behaviour = deployment.model
        rate = float(opts.get("tokens_per_second", 0) or 0)
        delay = 1.0 / rate if rate > 0 else 0.0
        first_ms = float(opts.get("first_token_ms", 0) or 0)

        if behaviour == "error-first":
            raise UpstreamError("simulated upstream failure before the first token", status=503)
        if first_ms:
            await asyncio.sleep(first_ms / 1000)
        if behaviour == "hang":
            await asyncio.Event().wait()

        await tokens.load()  # normally loaded already (started with the provider)
        yield Start(model=deployment.model, system_fingerprint="fp_tollway_sim")
        n = request.choices
        plans = [self._plan(behaviour, request, opts, c) for c in range(n)]
        cap = None if opts.get("ignore_cap") else request.max_output_tokens
        separate = opts.get("reasoning_usage") == "separate"
        capped = [0] * n  # tokens counted against the cap, per choice
        generated = [0] * n
        reasoning = [0] * n
        cut = [False] * n
        content_sent = 0
        report = opts.get("usage", True)
        prompt = tokens.count_prompt_tokens(request.messages, request.tools)
        call_id = "call_sim_" + str(sum(1 for m in request.messages if m.get("role") == "tool"))

        for step in range(max(len(plan) for plan in plans)):
            for c, plan in enumerate(plans):
                if cut[c] or step >= len(plan):
                    continue
                kind, text, count = plan[step]
                against_cap = not (separate and kind == "reasoning")
                if cap is not None and against_cap and capped[c] + count > cap:
                    cut[c] = True
                    continue
                if kind == "content" and c == 0:
                    if content_sent == _FAIL_AT and behaviour == "hang-midstream":
                        await asyncio.Event().wait()
                    if content_sent == _FAIL_AT and behaviour == "error-midstream":
                        raise UpstreamError("simulated upstream failure mid-stream", status=502)
                    content_sent += 1
                capped[c] += count if against_cap else 0
                generated[c] += count
                if kind == "reasoning":
                    reasoning[c] += count
                if kind == "tool":
                    yield ToolCallDelta(0, "", call_id, text, c)
                elif kind == "args":
                    yield ToolCallDelta(0, text, choice=c)
                else:
                    yield TextDelta(text, kind, c)  # type: ignore[arg-type]
            if report == "cumulative":
                yield self._usage(prompt, generated, reasoning, opts, deployment)
            if delay:
                await asyncio.sleep(delay)

        for c, plan in enumerate(plans):
            reason: FinishReason = "stop"
            if cut[c] or behaviour == "length":
                reason = "length"
            elif any(kind == "tool" for kind, _, _ in plan):
                reason = "tool_calls"
            yield Finish(reason, c)
        if report:
            yield self._usage(prompt, generated, reasoning, opts, deployment)

    @staticmethod
    def _usage(
        prompt: int,
        generated: list[int],
        reasoning: list[int],
        opts: dict[str, Any],
        deployment: DeploymentConfig,
    ) -> Usage:
        """The usage an OpenAI-compatible upstream would report, read like one."""
        output = sum(generated) + int(opts.get("extra_output_tokens", 0) or 0)
        thought = sum(reasoning)
        completion = output - thought if opts.get("reasoning_usage") == "separate" else output
        body = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + output,
            "completion_tokens_details": {"reasoning_tokens": thought},
        }
        return usage_from_openai(body, deployment.usage.reasoning)

    def _plan(
        self, behaviour: str, request: ChatRequest, opts: dict[str, Any], choice: int
    ) -> list[_Step]:
        """What one choice would generate with no cap, token by token."""
        reply, thinking, tool_call = self._script(behaviour, request, opts, choice)
        channel = "refusal" if behaviour == "refusal" else "content"
        plan: list[_Step] = [("reasoning", t, k) for t, k in token_pieces(thinking)]
        plan += [(channel, t, k) for t, k in token_pieces(reply)]
        if tool_call is not None:
            name, arguments = tool_call
            plan.append(("tool", name, tokens.count_text(name)))
            plan += [("args", t, k) for t, k in token_pieces(arguments)]
        return plan

    def _script(
        self, behaviour: str, request: ChatRequest, opts: dict[str, Any], choice: int
    ) -> tuple[str, str, tuple[str, str] | None]:
        """(reply, reasoning, tool call) for this behaviour."""
        text = opts.get("text")
        if behaviour == "tool":
            last = request.messages[-1] if request.messages else {}
            results = sum(1 for m in request.messages if m.get("role") == "tool")
            if last.get("role") == "tool" and results >= int(opts.get("tool_rounds", 1) or 1):
                return str(text or f"The tool returned: {last.get('content')}"), "", None
            name = opts.get("tool_name")
            if not name and request.tools:
                name = (request.tools[0].get("function") or {}).get("name")
            arguments = opts.get("arguments", {})
            args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
            return "", "", (str(name or "unknown_tool"), args)
        if behaviour == "reasoner":
            return (
                str(text or "The answer is 42."),
                "Let me think about this step by step before answering.",
                None,
            )
        if behaviour == "refusal":
            return str(text or "I'm sorry, but I can't help with that request."), "", None
        if behaviour == "lorem":
            if text:
                return str(text), "", None
            return _lorem(int(opts.get("tokens", 50)), choice), "", None
        if text:
            return str(text), "", None
        said = _last_user_text(request.messages).strip() or "nothing"
        return f"Hello from tollway's simulated model. You said: {said}", "", None


def _lorem(count: int, offset: int) -> str:
    """Filler of exactly ``count`` tokens (each lorem word with its space is one token)."""
    words = [_LOREM[(i + offset) % len(_LOREM)] for i in range(max(count, 0))]
    text = " ".join(words)
    pieces = token_pieces(text)
    if sum(k for _, k in pieces) != count:  # not expected; keep the promise anyway
        text = "".join(t for t, _ in pieces[:count])
    return text
