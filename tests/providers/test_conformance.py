"""The conformance suite over every built-in adapter, each replaying its own recordings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import unquote

import pytest

from tests.providers.conformance import ProviderSuite, Recording, check_recording, running
from tests.providers.recordings import (
    CONFORMANCE,
    Expected,
    anthropic_expected,
    anthropic_whole,
    bedrock_events,
    bedrock_expected,
    bedrock_stream_bytes,
    bedrock_whole,
    gemini_chunks,
    gemini_expected,
    gemini_whole,
    openai_expected,
    openai_whole,
    sse_data,
)

STREAMS = CONFORMANCE / "streams"


def _openai() -> ProviderSuite:
    recs = []
    for path in sorted((STREAMS / "openai").glob("*.sse")):
        if "error" in path.name:
            continue
        chunks = sse_data(path.read_bytes())
        recs.append(Recording(path.stem, path.read_bytes(),
                              json.dumps(openai_whole(chunks)).encode(),
                              openai_expected(chunks, path.stem)))
    return ProviderSuite(
        "openai", lambda url: {"type": "openai", "base_url": url, "api_key": "sk-x"}, recs,
        lambda path, body: (body["model"], bool(body.get("stream"))))


def _anthropic() -> ProviderSuite:
    recs = []
    for path in sorted((STREAMS / "anthropic").glob("*.sse")):
        if "error" in path.name:
            continue
        events = sse_data(path.read_bytes())
        recs.append(Recording(path.stem, path.read_bytes(),
                              json.dumps(anthropic_whole(events)).encode(),
                              anthropic_expected(events, path.stem)))
    return ProviderSuite(
        "anthropic", lambda url: {"type": "anthropic", "base_url": url, "api_key": "sk-ant"},
        recs, lambda path, body: (body["model"], bool(body.get("stream"))))


def _gemini_route(path: str, body: dict[str, Any]) -> tuple[str, bool]:
    model, _, method = unquote(path.rsplit("/models/", 1)[1]).partition(":")
    return model, method == "streamGenerateContent"


def _gemini() -> ProviderSuite:
    recs = []
    for path in sorted((STREAMS / "gemini").glob("*.sse")):
        chunks = gemini_chunks(path.read_bytes())
        blocked = any("blockReason" in c.get("promptFeedback", {}) for c in chunks)
        recs.append(Recording(path.stem, path.read_bytes(),
                              json.dumps(gemini_whole(chunks)).encode(),
                              gemini_expected(chunks, path.stem),
                              error=(400, "content_filter") if blocked else None))
    for name, upstream, status, code in (
        ("mirascope-gemini-stream-error-404-not-found", 404, 404, "NOT_FOUND"),
        ("mirascope-gemini-stream-error-400-api-key-invalid", 400, 502, "upstream_auth_failed"),
    ):
        raw = (CONFORMANCE / "gemini-json" / f"{name}.json").read_bytes()
        recs.append(Recording(name, raw, raw, Expected(model=name), error=(status, code),
                              status=upstream))
    return ProviderSuite("gemini", lambda url: {"type": "gemini", "base_url": url,
                                                "api_key": "AIza-x"}, recs, _gemini_route)


def _bedrock_route(path: str, body: dict[str, Any]) -> tuple[str, bool]:
    model, method = unquote(path.rsplit("/model/", 1)[1]).rsplit("/", 1)
    return model, method == "converse-stream"


def _bedrock() -> ProviderSuite:
    recs = []
    for path in sorted((STREAMS / "bedrock").iterdir()):
        events = bedrock_events(path.read_bytes())
        recs.append(Recording(path.name, bedrock_stream_bytes(path.read_bytes()),
                              json.dumps(bedrock_whole(events)).encode(),
                              bedrock_expected(events, path.name),
                              "application/vnd.amazon.eventstream"))
    return ProviderSuite("bedrock", lambda url: {
        "type": "bedrock", "base_url": url, "options": {
            "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "s"}},
        recs, _bedrock_route)


def _azure() -> ProviderSuite:
    """Streams in the shape Azure sends (see test_azure.py): an empty first chunk with
    ``prompt_filter_results``, then OpenAI chunks carrying ``content_filter_results``."""
    from tests.providers.test_azure import MODEL, azure_stream, azure_whole

    recs = []
    for name, parts, finish in (("azure-text", ["Hello", " from", " Azure"], "stop"),
                                ("azure-filtered", ["Partial"], "content_filter")):
        whole = azure_whole("".join(parts))
        whole["choices"][0]["finish_reason"] = finish
        recs.append(Recording(name, azure_stream(parts, finish), json.dumps(whole).encode(),
                              Expected(model=MODEL, text="".join(parts), finish=finish,
                                       usage=(12, 4, 0, 0))))
    return ProviderSuite(
        "azure", lambda url: {"type": "azure", "base_url": url.removesuffix("/v1"),
                              "api_key": "k"}, recs,
        lambda path, body: (unquote(path.split("/deployments/")[1].split("/")[0]),
                            bool(body.get("stream"))))


def _simulated() -> ProviderSuite:
    said = "Hello from tollway's simulated model. You said: replay"
    recs = [
        Recording("echo", b"", b"", Expected(model="echo", text=said, finish="stop")),
        Recording("reasoner", b"", b"", Expected(
            model="reasoner", text="The answer is 42.", finish="stop",
            reasoning="Let me think about this step by step before answering.")),
        Recording("length", b"", b"", Expected(model="length", text=said, finish="length")),
    ]
    return ProviderSuite("simulated", lambda url: {"type": "simulated"}, recs)


SUITES = [_openai(), _anthropic(), _gemini(), _bedrock(), _azure(), _simulated()]
CASES = [(s, r) for s in SUITES for r in s.recordings]


def test_every_adapter_and_recording_is_covered() -> None:
    from tollway.providers.registry import BUILTINS

    assert {s.type for s in SUITES} >= set(BUILTINS) - {"vertex"}  # vertex: Gemini's
    for suite in SUITES:
        assert len(suite.recordings) >= (5 if suite.type not in ("azure", "simulated") else 2)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One tollway (and upstream) per adapter, started when its first case runs."""
    with ExitStack() as stack:
        yield _Lazy(stack)


class _Lazy(dict[str, str]):
    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def __missing__(self, key: str) -> str:
        suite = next(s for s in SUITES if s.type == key)
        url = self._stack.enter_context(running(suite))
        self[key] = url
        return url


@pytest.mark.parametrize(("suite", "rec"), CASES, ids=[f"{s.type}-{r.name}" for s, r in CASES])
def test_recording_through_tollway(servers: dict[str, str], suite: ProviderSuite,
                                   rec: Recording) -> None:
    before = len(suite.requests)
    check_recording(servers[suite.type], rec)
    if suite.route is not None:  # two streaming calls (raw and SDK) and one whole; 2 for errors
        assert len(suite.requests) - before == (2 if rec.error else 3)
        assert all(model == rec.name for model, _ in
                   (suite.route(p, b) for p, b, _h in suite.requests[before:]))
