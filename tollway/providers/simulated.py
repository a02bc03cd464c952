"""A built-in provider that answers deterministically, for demos, tests and benchmarks.

The behaviour is chosen by the deployment's ``model`` (like TensorZero's dummy
provider); options come from the provider's ``options`` overlaid by the
deployment's ``options``:

==================  =====================================================
model               behaviour
==================  =====================================================
``echo``            "You said: <last user text>" (the default)
``lorem``           ``tokens`` words of deterministic filler
``reasoner``        reasoning_content first, then the answer
``tool``            calls a tool (``tool_name`` or the first request tool, with
                    ``arguments``); after a tool result, answers with it
``refusal``         a refusal
``length``          stops with ``finish_reason: length``
``error-first``     fails before the first token (503, retryable)
``error-midstream`` fails after a few tokens
``hang``            never sends a first token
``hang-midstream``  sends a few tokens, then never another
==================  =====================================================

Options: ``text`` (the reply, overrides the behaviour's), ``tokens_per_second``
(0: as fast as possible), ``first_token_ms``, ``usage`` (false: report none, so
tollway estimates), ``tokens`` (for lorem), ``tool_name``, ``arguments``.
Usage is counted with the real tokenizer, as an upstream would report it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway import tokens
from tollway.chunks import Event, Finish, Start, TextDelta, ToolCallDelta, Usage
from tollway.config import DeploymentConfig, ProviderConfig
from tollway.errors import UpstreamError
from tollway.providers.base import ChatRequest

__all__ = ["SimulatedProvider"]

_WORDS = re.compile(r"\s*\S+")
_LOREM = (
    "tollway meters every token it forwards and writes an auditable ledger entry for "
    "each request so that the cost of a streamed answer is known to the micro dollar"
).split()


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


class SimulatedProvider:
    """Deterministic answers at a configurable pace."""

    def __init__(self, name: str, config: ProviderConfig, session: Any = None) -> None:
        self.name = name
        self._options = dict(config.options)

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

        yield Start(model=deployment.model, system_fingerprint="fp_tollway_sim")
        reply, reasoning, tool_call = self._script(behaviour, request, opts)
        limit = request.max_output_tokens
        emitted: list[str] = []
        finish = "stop"
        budget = limit if limit is not None else 1 << 30

        for piece in _WORDS.findall(reasoning):
            if budget <= 0:
                break
            budget -= 1
            emitted.append(piece)
            yield TextDelta(piece, "reasoning")
            if delay:
                await asyncio.sleep(delay)

        channel = "refusal" if behaviour == "refusal" else "content"
        for i, piece in enumerate(_WORDS.findall(reply)):
            if budget <= 0:
                finish = "length"
                break
            budget -= 1
            if behaviour in ("error-midstream", "hang-midstream") and i == 3:
                if behaviour == "hang-midstream":
                    await asyncio.Event().wait()
                raise UpstreamError("simulated upstream failure mid-stream", status=502)
            emitted.append(piece)
            yield TextDelta(piece, channel)  # type: ignore[arg-type]
            if delay:
                await asyncio.sleep(delay)

        if tool_call is not None and finish == "stop":
            name, arguments = tool_call
            call_id = "call_sim_" + str(sum(1 for m in request.messages if m.get("role") == "tool"))
            half = len(arguments) // 2
            yield ToolCallDelta(0, arguments[:half], call_id, name)
            yield ToolCallDelta(0, arguments[half:])
            emitted.append(name + arguments)
            finish = "tool_calls"
        if behaviour == "length":
            finish = "length"
        yield Finish(finish)  # type: ignore[arg-type]

        if opts.get("usage", True):
            yield Usage(
                prompt_tokens=tokens.count_prompt_tokens(request.messages, request.tools),
                completion_tokens=tokens.count_text("".join(emitted)),
                reasoning_tokens=tokens.count_text(reasoning) if reasoning else 0,
            )

    def _script(
        self, behaviour: str, request: ChatRequest, opts: dict[str, Any]
    ) -> tuple[str, str, tuple[str, str] | None]:
        """(reply, reasoning, tool call) for this behaviour."""
        text = opts.get("text")
        if behaviour == "tool":
            last = request.messages[-1] if request.messages else {}
            if last.get("role") == "tool":
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
            count = int(opts.get("tokens", 50))
            words = [_LOREM[i % len(_LOREM)] for i in range(count)]
            return str(text or " ".join(words)), "", None
        if text:
            return str(text), "", None
        said = _last_user_text(request.messages).strip() or "nothing"
        return f"Hello from tollway's simulated model. You said: {said}", "", None
