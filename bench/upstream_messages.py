"""The benchmark upstream's Anthropic side: ``POST /v1/messages`` answers, pre-encoded.

Same shapes as the chat side (``bench.upstream``): N text deltas of ``"tok "``, paced by
the model name's ``-d<ms>``. A stream is ``message_start``, ``content_block_start``,
N ``content_block_delta``, ``content_block_stop``, ``message_delta`` (with usage),
``message_stop``; a whole answer is one ``message``.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["message_frames", "message_whole"]

_PROMPT_TOKENS = 12
_TOKEN = "tok "


def _message(model: str, text: str, stop: str | None, output: int) -> dict[str, Any]:
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}] if text else [],
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": _PROMPT_TOKENS, "output_tokens": output}}


def message_whole(model: str, chunks: int) -> bytes:
    body = orjson.dumps(_message(model, _TOKEN * chunks, "end_turn", chunks))
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    data = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **obj}) + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def message_frames(model: str, chunks: int) -> tuple[bytes, list[bytes], bytes]:
    """(head + message_start + block start, text deltas, tail) of a stream."""
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
    start = _message(model, "", None, 1)
    head += _event("message_start", {"message": start})
    head += _event("content_block_start", {"index": 0, "content_block": {"type": "text",
                                                                         "text": ""}})
    body = [_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                  "text": _TOKEN}})] * chunks
    tail = _event("content_block_stop", {"index": 0})
    tail += _event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": chunks}})
    tail += _event("message_stop", {}) + b"0\r\n\r\n"
    return head, body, tail
