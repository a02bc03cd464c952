"""Every string an upstream reads in a request body, in order, and how to write it back.

``segments(body)`` walks the JSON generically (fields tollway does not know
included) and yields each string with its place. What is left out carries no
text a model reads:

- numbers, booleans and null;
- values of enum fields that are exactly one of the enum's words (``role:
  "user"``, ``type: "text"``, ``detail: "high"``…): anything else in such a field
  is scanned like any string;
- keys that are field names of the OpenAI request or JSON Schema keywords
  (``content``, ``description``, ``properties``…): other keys (a schema's property
  names, unknown fields, metadata keys) are scanned;
- the base64 payload of inline images, audio and files (``image_url.url`` data
  URLs, ``input_audio.data``, ``file.file_data``): the upstream decodes them as
  binary, and scanning megabytes of base64 would cost time and find noise. The
  data URL's header is scanned; a payload that is not well-formed base64 is
  scanned as text. ``http(s)`` URLs are text and are scanned.

Each segment is ``text`` (read as running text, joined with its neighbours) or a
``word`` (an identifier: ids, names, URLs, keys, stop sequences… scanned alone,
since nothing reads them as a continuation of the text around them).

``rebuild(body, segments, new)`` returns a copy of ``body`` with the given segments'
texts replaced; containers on the way are copied, nothing of ``body`` is mutated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tollway.wire import openai as _wire

__all__ = ["ENUMS", "VOCABULARY", "WORD_FIELDS", "Segment", "param_of", "rebuild", "segments"]

Path = tuple[str | int, ...]

_SCHEMA_KEYWORDS = (
    "$schema $id $ref $defs $comment $anchor definitions type properties "
    "patternProperties additionalProperties unevaluatedProperties required items "
    "prefixItems additionalItems contains enum const default examples title "
    "description format pattern minimum maximum exclusiveMinimum exclusiveMaximum "
    "multipleOf minLength maxLength minItems maxItems uniqueItems minProperties "
    "maxProperties anyOf oneOf allOf not if then else nullable discriminator "
    "propertyNames dependentRequired dependentSchemas contentEncoding contentMediaType "
    "readOnly writeOnly deprecated strict schema name parameters"
).split()
_OPENAI_EXTRA = (
    "file_id file_data filename voice content_type cache_control ephemeral "
    "user_location approximate city country region timezone search_context_size "
    "allowed_tools mode tools function custom grammar syntax definition input "
    "json_schema text"
).split()


def _field_names() -> frozenset[str]:
    names: set[str] = set(_SCHEMA_KEYWORDS) | set(_OPENAI_EXTRA)
    for obj in vars(_wire).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            names.update(obj.model_fields)
    return frozenset(names)


VOCABULARY: frozenset[str] = _field_names()
"""Keys that are field names, never free text: not scanned (their values are)."""

ENUMS: dict[str, frozenset[str]] = {
    key: frozenset(words.split())
    for key, words in {
        "role": "system developer user assistant tool function",
        "type": "text image_url input_audio file refusal function custom json_schema "
        "json_object content allowed_tools approximate grammar python string number "
        "integer boolean object array null",
        "detail": "auto low high",
        "format": "wav mp3 flac opus pcm16 aac text grammar date-time date time duration "
        "email hostname ipv4 ipv6 uri uuid",
        "reasoning_effort": "none minimal low medium high xhigh",
        "verbosity": "low medium high",
        "tool_choice": "none auto required",
        "mode": "auto required",
        "service_tier": "auto default flex scale priority",
        "modalities": "text audio",
        "search_context_size": "low medium high",
    }.items()
}
"""Enum fields and their words: a value that is exactly one of them is not scanned."""

WORD_FIELDS = frozenset(
    "id tool_call_id name url file_id filename user safety_identifier prompt_cache_key "
    "stop voice required enum".split()
)
"""Fields holding identifiers (and lists of them): scanned alone, not joined with the
text around them."""

_BINARY = {("image_url", "url"), ("input_audio", "data"), ("file", "file_data")}
_BINARY_FIELDS = frozenset(field for _, field in _BINARY)
_CONTAINERS = frozenset({str, dict, list})
_KEY = object()  # marks a stack entry that is a key, not a value
_DATA_URL = re.compile(r"data:[^,]{0,256}?;base64,")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True, slots=True)
class Segment:
    """One string of the body: where it is, how it is read, and its text.

    ``path`` leads from the body to the string; when ``key`` is true the string is
    the last key of ``path`` itself. ``tail`` is kept verbatim after ``text`` (the
    payload of a data URL).
    """

    path: Path
    key: bool
    word: bool
    text: str
    tail: str = ""


def _binary(value: str) -> tuple[str, str] | None:
    """``(header, payload)`` of an inline base64 payload, else None."""
    if value.startswith("data:"):
        m = _DATA_URL.match(value)
        if m is None:
            return None
        head, payload = value[: m.end()], value[m.end():]
    else:
        head, payload = "", value
    if len(payload) % 4 or _BASE64.fullmatch(payload) is None:
        return None
    return head, payload


def segments(body: Mapping[str, Any], skip: Iterable[str] = ()) -> list[Segment]:
    """The strings of ``body`` in document order; top-level fields in ``skip`` are left out."""
    out: list[Segment] = []
    top_skip = frozenset(skip)
    # an explicit stack: request bodies may nest deeper than Python's recursion limit
    stack: list[tuple[Any, Path, Any]] = [(body, (), None)]
    pop, push, add = stack.pop, stack.append, out.append
    while stack:
        value, path, field = pop()
        kind = type(value)
        if kind is str:
            if not value:
                continue
            if field is _KEY:
                add(Segment(path, True, True, value))
                continue
            enum = ENUMS.get(field)
            if enum is not None and value in enum:
                continue
            if field in _BINARY_FIELDS and len(path) >= 2 and (path[-2], field) in _BINARY:
                parts = _binary(value)
                if parts is not None:
                    if parts[0]:
                        add(Segment(path, False, True, parts[0], parts[1]))
                    continue
            add(Segment(path, False, field in WORD_FIELDS, value))
        elif kind is dict:
            for k, v in reversed(value.items()):
                if not path and k in top_skip:
                    continue
                child = (*path, k)
                if type(v) in _CONTAINERS:
                    push((v, child, k))
                if k not in VOCABULARY and type(k) is str and k:
                    push((k, child, _KEY))
        elif kind is list:
            for i in range(len(value) - 1, -1, -1):
                v = value[i]
                if type(v) in _CONTAINERS:
                    push((v, (*path, i), field))
    return out


def param_of(segment: Segment) -> str:
    """The segment's place as an OpenAI ``param`` (``messages.[1].content``); keys that are
    not field names show as ``*``, so the text never appears in an error."""
    parts: list[str] = []
    for step in segment.path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            parts.append(step if step in VOCABULARY else "*")
    return ".".join(parts)


def rebuild(body: dict[str, Any], segs: list[Segment], new: Mapping[int, str]) -> dict[str, Any]:
    """A copy of ``body`` where segment ``segs[i]`` reads ``new[i]`` (plus its tail)."""
    root: dict[str, Any] = dict(body)
    copies: dict[Path, Any] = {(): root}

    def container(path: Path) -> Any:
        got = copies.get(path)
        if got is not None:
            return got
        depth = len(path)
        while depth and path[:depth] not in copies:  # the deepest copy on the way
            depth -= 1
        got = copies[path[:depth]]
        for d in range(depth, len(path)):  # bodies may nest deeply: no recursion
            step: Any = path[d]
            child = got[step]
            child = dict(child) if isinstance(child, dict) else list(child)
            got[step] = child
            got = copies[path[: d + 1]] = child
        return got

    for i in new:  # every container first: renaming keys below changes paths
        container(segs[i].path[:-1])
    renames: dict[Path, dict[str, str]] = {}
    for i, text in new.items():
        seg = segs[i]
        if seg.key:
            renames.setdefault(seg.path[:-1], {})[str(seg.path[-1])] = text
        else:
            container(seg.path[:-1])[seg.path[-1]] = text + seg.tail
    for where, names in renames.items():
        obj = copies[where]
        items = list(obj.items())
        obj.clear()
        for k, v in items:
            name = names.get(k, k)
            unique, n = name, 1
            while unique in obj:  # two keys redacted alike stay two keys
                n += 1
                unique = f"{name}_{n}"
            obj[unique] = v
    return root
