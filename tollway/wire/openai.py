"""OpenAI chat request models (CreateChatCompletionRequest), fields in spec order.

Validation only: the pipeline keeps the client's JSON dict and forwards it, so
fields tollway does not model reach OpenAI-compatible upstreams untouched.
Unknown fields are accepted (``extra="allow"``). No framework imports.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tollway.bounds import INT64_MAX, MAX_JSON_DEPTH, MAX_TOKENS
from tollway.errors import InvalidRequest

__all__ = ["ChatCompletionRequest", "deep_path", "validate_chat_request"]

TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
LogitBias = Annotated[int, Field(ge=-100, le=100)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Open):
    data: str
    format: str


class AudioPart(_Open):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(_Open):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(_Open):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function", "custom"] = "function"
    function: FunctionCall | None = None
    custom: dict[str, Any] | None = None


class DeveloperMessage(_Open):
    role: Literal["developer"]
    content: str | list[TextPart]
    name: str | None = None


class SystemMessage(_Open):
    role: Literal["system"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(_Open):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    refusal: str | None = None
    name: str | None = None
    audio: dict[str, Any] | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    reasoning_content: str | None = None


class ToolMessage(_Open):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


class FunctionMessage(_Open):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    DeveloperMessage
    | SystemMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Open):
    type: Literal["function"]
    function: FunctionDef


class CustomTool(_Open):
    type: Literal["custom"]
    custom: dict[str, Any]


Tool = Annotated[FunctionTool | CustomTool, Field(discriminator="type")]


class NamedToolChoice(_Open):
    type: Literal["function", "custom", "allowed_tools"]


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema", "grammar", "python"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(_Open):
    """CreateChatCompletionRequest, plus tollway's extensions at the end."""

    messages: list[Message] = Field(min_length=1)
    model: str = Field(min_length=1)
    modalities: list[str] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    max_completion_tokens: TokenCount | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    web_search_options: dict[str, Any] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    audio: dict[str, Any] | None = None
    store: bool | None = None
    stream: bool | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, LogitBias] | None = None
    logprobs: bool | None = None
    max_tokens: TokenCount | None = None
    n: int | None = Field(None, ge=1, le=128)
    prediction: dict[str, Any] | None = None
    seed: int | None = Field(None, ge=-INT64_MAX - 1, le=INT64_MAX)
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    function_call: Literal["none", "auto"] | dict[str, Any] | None = None
    functions: list[FunctionDef] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    # tollway extensions
    firewall: str | None = None
    platform_tools: list[str] | None = None
    include_route_trace: bool | None = None


_adapter = TypeAdapter(ChatCompletionRequest)


_TAGS = frozenset(
    "developer system user assistant tool function text image_url input_audio file refusal "
    "custom".split()
)


def _param(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location the way OpenAI names params: ``messages.[0].content``."""
    parts: list[str] = []
    after_index = False
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            after_index = True
            continue
        skip = (after_index and item in _TAGS) or "[" in item or item[:1].isupper()
        skip = skip or item in ("str", "int", "float", "bool")
        after_index = False
        if not skip:
            parts.append(item)
    return ".".join(parts)


def deep_path(node: Any, limit: int = MAX_JSON_DEPTH) -> list[int | str] | None:
    """The path to the first array/object nested deeper than ``limit`` levels, else None.

    ``node`` itself is level 1 (a bare ``{}`` has depth 1).
    """
    if limit <= 0:
        return []
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return None
    for key, value in items:
        if isinstance(value, dict | list):
            below = deep_path(value, limit - 1)
            if below is not None:
                return [key, *below]
    return None


def _field_names(model: type[BaseModel], visited: set[type[BaseModel]]) -> set[str]:
    """Every field name declared by ``model`` and the models inside it."""
    visited.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for inner in _models_in(field.annotation):
            if inner not in visited:
                names |= _field_names(inner, visited)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _field_path(path: list[int | str]) -> str:
    """The request field a deep path lies in: the path up to the first key no model declares."""
    parts: list[str] = []
    for item in path[:8]:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if item not in _FIELDS:
            if not parts:  # a field tollway does not model: name it
                parts.append(item)
            break
        parts.append(item)
    return ".".join(parts)


_FIELDS = _field_names(ChatCompletionRequest, set())


def _check_depth(body: dict[str, Any], raw: bytes | None) -> None:
    # a body with fewer brackets than the limit cannot nest that deep (a C-speed count);
    # otherwise walk it. Every later encoder (upstream body, token count, trace) stays
    # far below the JSON encoder's own depth limit.
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    path = deep_path(body, MAX_JSON_DEPTH)
    if path is not None:
        param = _field_path(path)
        raise InvalidRequest(
            f"Invalid value for '{param}': JSON nested deeper than {MAX_JSON_DEPTH} levels.",
            param=param,
            code="invalid_value",
        )


def validate_chat_request(body: Any, raw: bytes | None = None) -> ChatCompletionRequest:
    """Validate a decoded JSON body; raise ``InvalidRequest`` naming the bad field.

    ``raw`` (the body's bytes) lets the nesting-depth check skip its walk for the
    usual shallow body.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    _check_depth(body, raw)
    try:
        return _adapter.validate_python(body)
    except ValidationError as exc:
        # the deepest location is the most precise one (unions report every branch)
        err = max(exc.errors(include_url=False), key=lambda e: len(e["loc"]))
        param = _param(err["loc"])
        if err["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
        elif err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
            message = f"Invalid value for '{param}': {err['msg']}."
        else:
            message = f"Invalid value for '{param}': {err['msg']}."
        raise InvalidRequest(message, param=param or None, code="invalid_value") from None
