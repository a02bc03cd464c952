"""Validation of an embeddings request body (OpenAI's ``CreateEmbeddingRequest``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollway.errors import InvalidRequest

__all__ = ["MAX_INPUTS", "EmbeddingsRequest", "parse_embeddings_request"]

MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request


@dataclass(slots=True)
class EmbeddingsRequest:
    """The client's body, and its inputs as a list (each a string or a token array)."""

    body: dict[str, Any]
    model: str
    inputs: list[str | list[int]]
    encoding_format: str  # "float" | "base64"


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        type(t) is int and 0 <= t < (1 << 31) for t in value
    )


def _inputs(value: Any) -> list[str | list[int]]:
    """``input``: a string, a list of strings, a token array or a list of token arrays."""
    if isinstance(value, str):
        if not value:
            raise _bad("'input' must not be an empty string.", "input")
        return [value]
    if not isinstance(value, list) or not value:
        raise _bad("'input' must be a non-empty string, array of strings, array of "
                   "tokens, or array of token arrays.", "input")  # fmt: skip
    if _token_array(value):
        return [value]
    out: list[str | list[int]] = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            out.append(item)
        elif _token_array(item):
            out.append(item)
        else:
            raise _bad(f"'input[{i}]' must be a non-empty string or an array of token ids.",
                       f"input[{i}]")  # fmt: skip
    if len(out) > MAX_INPUTS:
        raise _bad(f"'input' has {len(out)} items; at most {MAX_INPUTS} are allowed.", "input")
    return out


def parse_embeddings_request(body: Any) -> EmbeddingsRequest:
    """The request, or an ``InvalidRequest`` naming the field at fault."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string.", param="model",
                             code="missing_required_parameter" if model is None else
                             "invalid_type")  # fmt: skip
    if "input" not in body:
        raise InvalidRequest("'input' is required.", param="input",
                             code="missing_required_parameter")  # fmt: skip
    inputs = _inputs(body["input"])
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise _bad("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (type(dims) is not int or not 1 <= dims <= 65536):
        raise _bad("'dimensions' must be an integer from 1 to 65536.", "dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("'user' must be a string.", "user")
    return EmbeddingsRequest(body=body, model=model, inputs=inputs, encoding_format=fmt)
