"""Platform tools inside a translated Responses request: tollway runs them (as for chat,
against the scripted upstream of ``tests/tools``) and shows each as an ``mcp_call`` item."""

from __future__ import annotations

from typing import Any

import openai

from tests.tools.test_e2e import client  # noqa: F401  (the fixture: tollway + scripted upstream)


def test_calls_become_mcp_call_items_streamed_and_not(client: openai.OpenAI) -> None:  # noqa: F811
    kwargs: Any = {"model": "one", "input": "hi", "extra_body": {"platform_tools": ["calculator"]}}
    whole = client.responses.create(**kwargs)
    calls = [o for o in whole.output if o.type == "mcp_call"]
    assert [(c.name, c.output, c.server_label) for c in calls] == [("calculator", "42", "tollway")]
    assert whole.output_text.endswith("The answer is 42.")
    with client.responses.stream(**kwargs) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds.count("response.output_item.done") >= 2 and kinds[-1] == "response.completed"
    assert [o.type for o in final.output if o.type == "mcp_call"] == ["mcp_call"]
    assert all(o.type != "function_call" for o in final.output)  # nothing for the client to run
