"""What each core endpoint takes and returns, for the OpenAPI document (``api/openapi.py``).

Request bodies come from the models that validate them (``wire/openai.py``); this
module adds what the code does not declare as models: query and path parameters,
response shapes and the statuses each endpoint can answer. ``OPERATIONS`` is keyed by
``(method, path pattern)`` exactly as the core mounts its routes; plugins describe
their own routes (``Route.doc``).
"""

from __future__ import annotations

from typing import Any

from tollway.plugins.docs import INT, NSTR, STR, Operation, obj, ref

__all__ = ["OPERATIONS", "SCHEMAS"]

SCHEMAS: dict[str, Any] = {
    "Error": obj(["error"], {"error": obj(["message", "type", "param", "code"], {
        "message": STR, "type": STR, "param": NSTR,
        "code": {"type": ["string", "integer", "null"]},
    }, extra=False)}, extra=False),
    "Health": obj(["status"], {"status": {"const": "ok"}}),
    "Model": obj(["id", "object", "created", "owned_by"], {
        "id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR}),
    "ModelList": obj(["object", "data"], {
        "object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}}),
    "ChatCompletion": obj(["id", "object", "created", "model", "choices"], {
        "id": STR, "object": {"const": "chat.completion"}, "created": INT, "model": STR,
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    }),
    "ChatCompletionChunk": obj(["id", "object", "created", "model", "choices"], {
        "id": STR, "object": {"const": "chat.completion.chunk"}, "created": INT,
        "model": STR, "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    }),
    "ChatCompletionEvent": obj(["data"], {
        "event": {"const": "message"},
        "data": {"anyOf": [
            {"const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"anyOf": [ref("ChatCompletionChunk"), ref("Error")]}},
        ]},
    }, extra=False),
}  # fmt: skip


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation("Liveness", "meta", {200: ref("Health")}),
    ("GET", "/openapi.json"): Operation("This document", "meta", {200: {"type": "object"}}),
    ("POST", "/v1/chat/completions"): Operation(
        "Create a chat completion (OpenAI's request, plus tollway's extensions)", "chat",
        {200: {"content": {"application/json": {"schema": ref("ChatCompletion")},
                           "text/event-stream": {"schema": ref("ChatCompletionEvent")}}}},
        errors=(402, 404, 502, 503, 504), body="ChatCompletionRequest", body_required=True),
    ("GET", "/v1/models"): Operation("List models", "models", {200: ref("ModelList")}),
    ("GET", "/v1/models/{model}"): Operation(
        "Retrieve a model", "models", {200: ref("Model")}, errors=(404,)),
}  # fmt: skip
