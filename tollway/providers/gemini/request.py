"""OpenAI chat request → Gemini ``generateContent`` request (Gemini API and Vertex AI).

==========================  ==================================================
OpenAI                      Gemini
==========================  ==================================================
system / developer msgs     ``systemInstruction.parts`` (hoisted, in order)
user content                ``text``; image / audio / file data URLs →
                            ``inlineData``; ``gs://`` and http(s) URLs →
                            ``fileData`` (MIME type from the extension)
assistant content           ``model`` turn: ``text``; ``tool_calls`` →
                            ``functionCall`` parts, each with the
                            ``thoughtSignature`` its id carries (below)
``tool`` messages           ``functionResponse`` parts (name found from the
                            assistant turn that made the call;
                            ``response = {"output": <JSON or text>}``)
consecutive same-role turns merged into one turn
``tools`` (function)        ``functionDeclarations`` with
                            ``parametersJsonSchema`` (full JSON Schema)
``tool_choice``             auto → AUTO, none → NONE, required → ANY,
                            a named function → ANY + allowedFunctionNames
``response_format``         json_object → ``responseMimeType``
                            application/json; json_schema → that plus
                            ``responseJsonSchema``
max tokens                  ``maxOutputTokens`` (thinking counts toward it)
``reasoning_effort``        ``thinkingConfig.thinkingBudget`` (see
                            ``THINKING_BUDGETS``) with ``includeThoughts``
temperature, top_p, stop,   ``temperature``, ``topP``, ``stopSequences``,
n, seed, penalties, top_k   ``candidateCount``, ``seed``, ``presencePenalty``,
                            ``frequencyPenalty``, ``topK``
==========================  ==================================================

**Thought signatures.** Gemini signs the function calls of a thinking turn
(``thoughtSignature``) and, for Gemini 3, rejects a conversation whose earlier
function calls come back without it. OpenAI clients keep only a tool call's
``id``, ``name`` and ``arguments``, so the signature travels inside the id:
``<call id>:ts:<signature>`` (see ``tool_call_id``). When the client sends the
assistant turn back, the signature is split off the id and put on the
``functionCall`` part again. A tool call that also carries Google's own
OpenAI-compatibility field ``extra_content.google.thought_signature`` is read too.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import orjson

from tollway.errors import InvalidRequest

__all__ = [
    "SIGNATURE_MARK",
    "THINKING_BUDGETS",
    "build_generate_request",
    "split_tool_call_id",
    "tool_call_id",
]

SIGNATURE_MARK = ":ts:"
THINKING_BUDGETS: dict[str, int] = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
}
_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def tool_call_id(base: str, signature: str | None) -> str:
    """The OpenAI tool call id for a Gemini function call (signature folded in)."""
    return f"{base}{SIGNATURE_MARK}{signature}" if signature else base


def split_tool_call_id(call_id: str) -> tuple[str, str | None]:
    """``(base id, thought signature or None)`` from an id made by ``tool_call_id``."""
    base, mark, signature = call_id.partition(SIGNATURE_MARK)
    return (base, signature) if mark and signature else (call_id, None)


def build_generate_request(
    body: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    max_output_tokens: int | None,
) -> dict[str, Any]:
    """The JSON body for ``models/{model}:generateContent`` (and the streaming call)."""
    system, contents = translate_messages(messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if tools:
        out["tools"] = [{"functionDeclarations": translate_tools(tools)}]
        config = _tool_config(body.get("tool_choice"))
        if config is not None:
            out["toolConfig"] = config
    generation = _generation_config(body, max_output_tokens)
    if generation:
        out["generationConfig"] = generation
    return out


def _generation_config(body: dict[str, Any], max_output_tokens: int | None) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    limit = max_output_tokens or body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        gen["maxOutputTokens"] = int(limit)
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            gen[theirs] = body[ours]
    if body.get("n") not in (None, 1):
        gen["candidateCount"] = body["n"]
    stop = body.get("stop")
    if stop:
        gen["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if fmt["type"] == "json_schema" and isinstance(schema, dict):
            gen["responseJsonSchema"] = schema
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in THINKING_BUDGETS:
        budget = THINKING_BUDGETS[effort]
        thinking: dict[str, Any] = {"thinkingBudget": budget}
        if budget:
            thinking["includeThoughts"] = True
        gen["thinkingConfig"] = thinking
    return gen


def translate_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages → (system parts, Gemini contents with same roles merged)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        role = msg.get("role")
        parts: list[dict[str, Any]]
        if role in ("system", "developer"):
            system.extend(p for p in _parts(msg.get("content"), i) if "text" in p)
            continue
        if role == "user":
            parts, gem_role = _parts(msg.get("content"), i), "user"
        elif role == "assistant":
            parts = [p for p in _parts(msg.get("content"), i) if "text" in p]
            for call in msg.get("tool_calls") or ():
                part = _function_call(call, i)
                call_names[str(call.get("id"))] = part["functionCall"]["name"]
                parts.append(part)
            gem_role = "model"
        elif role in ("tool", "function"):
            parts, gem_role = [_function_response(msg, call_names, i)], "user"
        else:
            raise InvalidRequest(f"messages[{i}].role: unsupported role {role!r}", param="messages")
        if not parts:
            continue
        if contents and contents[-1]["role"] == gem_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gem_role, "parts": parts})
    return system, contents


def _parts(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages[{i}].content: expected a string or a list", param="messages"
        )
    out = []
    for part in content:
        converted = _part(part, i)
        if converted is not None:
            out.append(converted)
    return out


def _part(part: Any, i: int) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        raise InvalidRequest(f"messages[{i}].content: bad content part", param="messages")
    kind = part.get("type")
    if kind == "text":
        return {"text": str(part.get("text") or "")} if part.get("text") else None
    if kind == "image_url":
        image = part.get("image_url")
        return _media(str((image.get("url") if isinstance(image, dict) else image) or ""), i)
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        fmt = str(audio.get("format") or "wav")
        return {"inlineData": {"mimeType": f"audio/{fmt}", "data": str(audio.get("data") or "")}}
    if kind == "file":
        data = (part.get("file") or {}).get("file_data")
        if isinstance(data, str) and data.startswith("data:"):
            return _media(data, i)
        raise InvalidRequest(f"messages[{i}]: only inline (data URL) files are supported")
    if kind == "refusal":
        return None
    raise InvalidRequest(
        f"messages[{i}].content: part type {kind!r} is not supported by this model",
        param="messages",
    )


def _media(url: str, i: int) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not mime:
            raise InvalidRequest(f"messages[{i}]: data URLs must be base64", param="messages")
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("gs://", "http://", "https://")):
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
        if guessed is None:
            raise InvalidRequest(
                f"messages[{i}]: cannot tell the media type of {url[:100]!r}; "
                "send it as a base64 data URL",
                param="messages",
            )
        return {"fileData": {"mimeType": guessed, "fileUri": url}}
    raise InvalidRequest(f"messages[{i}]: unsupported media URL", param="messages")


def _function_call(call: dict[str, Any], i: int) -> dict[str, Any]:
    function = call.get("function") or {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"messages[{i}].tool_calls: a call needs a function name")
    raw = function.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"messages[{i}].tool_calls: arguments are not valid JSON", param="messages"
        ) from None
    if not isinstance(args, dict):
        args = {"value": args}
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    signature: str | None = split_tool_call_id(str(call.get("id") or ""))[1]
    extra = call.get("extra_content")
    if signature is None and isinstance(extra, dict):
        google = extra.get("google")
        if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
            signature = google["thought_signature"]
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_response(
    msg: dict[str, Any], call_names: dict[str, str], i: int
) -> dict[str, Any]:
    name = msg.get("name") if msg.get("role") == "function" else None
    if not name:
        name = call_names.get(str(msg.get("tool_call_id")))
    if not name:
        raise InvalidRequest(
            f"messages[{i}].tool_call_id: no earlier assistant tool call has this id",
            param="messages",
        )
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    text = "" if content is None else str(content)
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    return {"functionResponse": {"name": name, "response": {"output": value}}}


def translate_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools → Gemini ``functionDeclarations``."""
    out = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not fn.get("name"):
            raise InvalidRequest("tools: only function tools are supported", param="tools")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if fn.get("parameters"):
            decl["parametersJsonSchema"] = fn["parameters"]
        out.append(decl)
    return out


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _CHOICE_MODES:
        return {"functionCallingConfig": {"mode": _CHOICE_MODES[choice]}}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise InvalidRequest(f"tool_choice: unsupported value {choice!r}", param="tool_choice")
