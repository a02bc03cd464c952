"""Platform tools inside a /v1/messages stream to an Anthropic deployment: the client's own
body still goes upstream, with the platform tools and the loop's turns appended."""

from __future__ import annotations

import json
from typing import Any

import anthropic
from aiohttp import web

from tests.support.servers import Upstream, run_tollway


def _sse(kind: str, obj: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **obj})}\n\n".encode()


def _answer(blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]], stop: str) -> bytes:
    message = {"id": "msg_u", "type": "message", "role": "assistant", "model": "claude-u",
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 20, "output_tokens": 1}}
    out = [_sse("message_start", {"message": message})]
    for index, (block, deltas) in enumerate(blocks):
        out.append(_sse("content_block_start", {"index": index, "content_block": block}))
        out += [_sse("content_block_delta", {"index": index, "delta": d}) for d in deltas]
        out.append(_sse("content_block_stop", {"index": index}))
    out += [_sse("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                   "usage": {"output_tokens": 9}}), _sse("message_stop", {})]
    return b"".join(out)


ROUND_1 = _answer([
    ({"type": "thinking", "thinking": "", "signature": ""},
     [{"type": "thinking_delta", "thinking": "Use the calculator."},
      {"type": "signature_delta", "signature": "sig-1"}]),
    ({"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {}},
     [{"type": "input_json_delta", "partial_json": '{"expression": "6*7"}'}]),
], "tool_use")
ROUND_2 = _answer([({"type": "text", "text": ""}, [{"type": "text_delta", "text": "It is 42."}])],
                  "end_turn")


async def _model(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    last = upstream.requests[-1]["messages"][-1]
    second = isinstance(last["content"], list) and any(
        b.get("type") == "tool_result" for b in last["content"])
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(ROUND_2 if second else ROUND_1)
    await resp.write_eof()
    return resp


def test_platform_tools_keep_the_clients_body() -> None:
    system = [{"type": "text", "text": "Be exact.", "cache_control": {"type": "ephemeral",
                                                                        "ttl": "1h"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "6*7?"}]}]
    with Upstream(_model) as up, run_tollway({
        "providers": {"anth": {"type": "anthropic", "base_url": up.base_url, "api_key": "k"}},
        "models": {"claude": {"deployments": [{"provider": "anth", "model": "claude-u"}]}},
        "tools": {"calculator": {}},
    }) as url:
        client = anthropic.Anthropic(base_url=url, api_key="tw", max_retries=0)
        with client.messages.stream(
            model="claude", max_tokens=2048, system=system, messages=messages,
            thinking={"type": "enabled", "budget_tokens": 1024},
            extra_body={"platform_tools": ["calculator"], "container": "c-1"},
        ) as stream:
            final = stream.get_final_message()
    first, second = up.requests
    for sent in (first, second):  # the client's fields as it sent them
        assert sent["system"] == system and sent["container"] == "c-1"
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        assert [t["name"] for t in sent["tools"]] == ["calculator"]
    assert first["messages"] == messages
    assert second["messages"][0] == messages[0]
    turn, results = second["messages"][1], second["messages"][2]
    assert turn["role"] == "assistant" and turn["content"][-1]["type"] == "tool_use"
    assert turn["content"][-1]["input"] == {"expression": "6*7"}
    assert results["content"][0]["type"] == "tool_result"
    assert results["content"][0]["tool_use_id"] == turn["content"][-1]["id"]
    kinds = [b.type for b in final.content]
    assert kinds[0] == "thinking" and final.content[0].signature == "sig-1"
    assert "server_tool_use" in kinds and "platform_tool_result" in kinds
    assert final.content[-1].type == "text" and final.content[-1].text == "It is 42."
    assert final.stop_reason == "end_turn"
