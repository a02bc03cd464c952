"""The load generator: raw asyncio + httptools HTTP/1.1 keep-alive client on uvloop.

Run as a child process: ``python -m bench.loadgen SPEC_JSON``. It opens
``concurrency`` connections, sends ``warmup`` unrecorded requests on each, prints
``{"event": "ready"}``, waits for a line on stdin, then runs the measured phase
(bounded by ``requests`` and ``duration``) and prints one ``{"event": "result"}``
line. Every response is verified: status 200; a non-streaming body has choices with
content and usage; a stream carries exactly the expected number of non-empty content
deltas, a usage chunk when asked for, and ends with ``data: [DONE]``. Anything else
is an error. Latency is send → last byte; TTFT is send → first content delta.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import httptools
import orjson

__all__ = ["LoadResult", "Spec", "encode_request", "main", "run"]


@dataclass(slots=True)
class Spec:
    """One load generator process's job. ``requests`` 0 means bounded by time only."""

    host: str
    port: int
    model: str
    key: str = "x"
    stream: bool = False
    chunks: int = 10
    extra: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 1
    requests: int = 100
    duration: float = 30.0
    warmup: int = 1
    ramp: float = 0.0
    steady_after: float = 0.0
    think: float = 0.0
    timeout: float = 30.0
    stream_every: int = 0  # >0: every k-th request streams (mixed load), the rest do not
    api: str = "chat"  # or "messages": Anthropic's POST /v1/messages
    # probe mode (interval > 0): open loop, a new request on a new connection every
    # ``interval`` s from ``start_after`` s after go until ``stop_before`` s before the
    # end of ``duration``, alternately non-streaming and streaming; ``concurrency`` is
    # ignored. Streams record TTFT (``ttft_ms``), whole answers their latency
    # (``latency_ms``): the time until the first content reached the client.
    interval: float = 0.0
    start_after: float = 0.0
    stop_before: float = 0.0


@dataclass(slots=True)
class LoadResult:
    """What one process measured. Times in ms; latency/ttft only for recorded requests."""

    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    chunks: int = 0
    latency_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    # each recorded stream's longest wait between two content chunks (the paced upstream
    # sends one every ``-d<ms>``: the excess is what the gateway added, e.g. coalescing)
    gap_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0


def encode_request(spec: Spec, stream: bool) -> bytes:
    """The whole HTTP request, pre-encoded once."""
    body: dict[str, Any] = {
        "model": spec.model,
        "messages": [{"role": "user", "content": "Say a few words."}],
        "max_tokens": spec.chunks,
        "stream": stream,
    }
    messages = spec.api == "messages"
    if stream and not messages:
        body["stream_options"] = {"include_usage": True}
    body.update(spec.extra)
    raw = orjson.dumps(body)
    path, auth = (("/v1/messages", f"x-api-key: {spec.key}\r\nanthropic-version: 2023-06-01")
                  if messages else ("/v1/chat/completions", f"Authorization: Bearer {spec.key}"))
    head = (f"POST {path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            f"Content-Type: application/json\r\n{auth}\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n")
    return head.encode() + raw


class VerifyError(Exception):
    """A response arrived but is wrong."""


class Conn(asyncio.Protocol):
    """One keep-alive client connection; one request in flight at a time."""

    messages = False  # answers in Anthropic's format (set per process)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.fut: asyncio.Future[None] | None = None
        self.lost = False
        self._reset(False, 0)

    def _reset(self, stream: bool, expect: int) -> None:
        self.stream = stream
        self.expect = expect
        self.buf = b""
        self.body: list[bytes] = []
        self.count = 0
        self.done = False
        self.usage = False
        self.first = 0.0
        self.last = 0.0
        self.max_gap = 0.0
        self.problem = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("connection lost mid-response"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(VerifyError(f"bad HTTP: {exc}"))
        except (VerifyError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            self._fail(VerifyError(f"{type(exc).__name__}: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def request(self, payload: bytes, stream: bool, expect: int) -> asyncio.Future[None]:
        """Send; the future resolves when the response is complete and verified."""
        assert self.transport is not None
        self._reset(stream, expect)
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.fut

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if not self.stream:
            self.body.append(body)
            return
        buf = self.buf + body if self.buf else body
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            self._event(buf[start:end])
            start = end + 2
        self.buf = buf[start:]

    def _event(self, event: bytes) -> None:
        if not event.startswith(b"data:"):
            lines = [ln for ln in event.replace(b"\r", b"").split(b"\n") if ln.startswith(b"data:")]
            if not lines:
                return  # comment / event-only lines
            event = b"\n".join(ln[5:].lstrip(b" ") for ln in lines)
        else:
            event = event[5:].lstrip(b" ")
        if self.done:
            raise VerifyError("data after [DONE]")
        if self.messages:
            self._message_event(event)
            return
        if event == b"[DONE]":
            self.done = True
            return
        obj = orjson.loads(event)
        if "error" in obj:
            raise VerifyError(f"error event: {str(obj['error'])[:200]}")
        choices = obj.get("choices")
        if choices:
            delta = choices[0].get("delta")
            if delta and delta.get("content"):
                self._content()
        if obj.get("usage"):
            self.usage = True

    def _content(self) -> None:
        """A content chunk arrived: count it, note the first and the longest gap."""
        self.count += 1
        now = time.perf_counter()
        if not self.first:
            self.first = now
        elif now - self.last > self.max_gap:
            self.max_gap = now - self.last
        self.last = now

    def _message_event(self, event: bytes) -> None:
        obj = orjson.loads(event)
        kind = obj.get("type")
        if kind == "content_block_delta" and obj["delta"].get("text"):
            self._content()
        elif kind == "message_delta" and obj.get("usage"):
            self.usage = True
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise VerifyError(f"error event: {str(obj.get('error'))[:200]}")

    def on_message_complete(self) -> None:
        fut = self.fut
        if fut is None or fut.done():
            return
        status = self.parser.get_status_code()
        try:
            if status != 200:
                raw = b"".join(self.body) or self.buf
                raise VerifyError(f"HTTP {status}: {raw[:200]!r}")
            if self.stream:
                self._check_stream()
            else:
                self._check_completion()
        except (VerifyError, orjson.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
            fut.set_exception(exc if isinstance(exc, VerifyError) else VerifyError(repr(exc)))
            return
        fut.set_result(None)
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.transport.close()

    def _check_stream(self) -> None:
        if self.buf.strip():
            self._event(self.buf.strip())
        if not self.done:
            raise VerifyError("stream did not end (data: [DONE] or message_stop)")
        if self.count != self.expect:
            raise VerifyError(f"stream had {self.count} content chunks, expected {self.expect}")
        if not self.usage:
            raise VerifyError("stream had no usage chunk")

    def _check_completion(self) -> None:
        obj = orjson.loads(b"".join(self.body))
        if self.messages:
            if not obj["content"] or not obj["content"][0].get("text"):
                raise VerifyError("message without text content")
            if "output_tokens" not in (obj.get("usage") or {}):
                raise VerifyError("message without usage")
            self.count = 1
            return
        if not obj["choices"] or not obj["choices"][0]["message"].get("content"):
            raise VerifyError("completion without choices/content")
        if not obj.get("usage") or "completion_tokens" not in obj["usage"]:
            raise VerifyError("completion without usage")
        self.count = 1


class Runner:
    """Shared state of the slots of one process."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.result = LoadResult()
        self.payloads = {s: encode_request(spec, s) for s in (False, True)}
        self.tickets = spec.requests if spec.requests > 0 else 1 << 62
        self.issued = 0
        self.go = asyncio.Event()
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.t0 = 0.0
        self.deadline = 0.0

    async def connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Conn, self.spec.host, self.spec.port)
        conn.messages = self.spec.api == "messages"
        return conn

    def _note_error(self, exc: BaseException) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < 5:
            self.result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])

    async def one(self, conn: Conn | None, record: bool, stream: bool | None = None
                  ) -> tuple[Conn | None, float, float, int]:
        """One request; returns (connection or None if it broke, latency s, ttft s, chunks)."""
        spec = self.spec
        self.issued += 1
        if stream is None:
            stream = (spec.stream if spec.stream_every <= 0
                      else self.issued % spec.stream_every == 0)
        loop = asyncio.get_running_loop()
        t = time.perf_counter()
        try:
            if conn is None or conn.lost:
                conn = await self.connect()
            fut = conn.request(self.payloads[stream], stream, spec.chunks)
            timer = loop.call_later(spec.timeout, _expire, fut)
            try:
                await fut
            finally:
                timer.cancel()
        except (OSError, VerifyError, TimeoutError, ConnectionError) as exc:
            if record:
                self._note_error(exc)
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            return None, 0.0, 0.0, 0
        end = time.perf_counter()
        ttft = (conn.first - t) if conn.first else 0.0
        return conn, end - t, ttft, conn.count if stream else 0

    async def slot(self, index: int) -> None:
        spec, res = self.spec, self.result
        conn: Conn | None = None
        for _ in range(spec.warmup):
            conn, *_ = await self.one(conn, False)
        self.ready += 1
        if self.ready == spec.concurrency:
            self.all_ready.set()
        await self.go.wait()
        if spec.ramp:
            await asyncio.sleep(spec.ramp * index / spec.concurrency)
        steady = self.t0 + spec.steady_after
        while self.tickets > 0 and time.perf_counter() < self.deadline:
            self.tickets -= 1
            started = time.perf_counter()
            conn, lat, ttft, chunks = await self.one(conn, True)
            if lat:
                res.ok += 1
                res.chunks += chunks
                if started >= steady:
                    res.latency_ms.append(round(lat * 1000, 4))
                    if ttft:
                        res.ttft_ms.append(round(ttft * 1000, 4))
                    if chunks > 1 and conn is not None:
                        res.gap_ms.append(round(conn.max_gap * 1000, 4))
            if spec.think:
                await asyncio.sleep(spec.think)


    async def probe_one(self, stream: bool) -> None:
        """One probe request on a fresh connection (its connect time counts)."""
        res = self.result
        conn, lat, ttft, chunks = await self.one(None, True, stream)
        if conn is not None and conn.transport is not None:
            conn.transport.close()
        if not lat:
            return
        res.ok += 1
        res.chunks += chunks
        if stream:
            res.ttft_ms.append(round(ttft * 1000, 4))
        else:
            res.latency_ms.append(round(lat * 1000, 4))

    async def probe(self) -> None:
        """Open loop: a new request every ``interval`` s, alternately whole and streamed."""
        spec = self.spec
        for stream in (False, True):  # warm-up, unrecorded: imports, first connection
            conn, *_ = await self.one(None, False, stream)
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self.ready = spec.concurrency
        self.all_ready.set()
        await self.go.wait()
        loop = asyncio.get_running_loop()
        start = loop.time() + spec.start_after
        stop = loop.time() + spec.duration - spec.stop_before
        tasks = []
        i = 0
        while (at := start + i * spec.interval) < stop:
            await asyncio.sleep(max(0.0, at - loop.time()))
            tasks.append(asyncio.create_task(self.probe_one(stream=i % 2 == 1)))
            i += 1
        await asyncio.gather(*tasks)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("request timed out"))


async def run(spec: Spec, wait_for_go: bool = True) -> LoadResult:
    """Warm up, report ready, wait for the go line, run the measured phase."""
    runner = Runner(spec)
    tasks = ([asyncio.create_task(runner.probe())] if spec.interval > 0
             else [asyncio.create_task(runner.slot(i)) for i in range(spec.concurrency)])
    await runner.all_ready.wait()
    if wait_for_go:
        _emit({"event": "ready"})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu0 = time.process_time()
    runner.t0 = time.perf_counter()
    runner.deadline = runner.t0 + spec.duration
    runner.go.set()
    await asyncio.gather(*tasks)
    runner.result.wall_s = time.perf_counter() - runner.t0
    runner.result.cpu_s = time.process_time() - cpu0
    return runner.result


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.loadgen SPEC_JSON [RESULT_FILE]``: with a file, the result (its
    per-request lists run to hundreds of KB) is written there and only its name goes to
    stdout, so no pipe has to hold it."""
    args = sys.argv[1:] if argv is None else argv
    spec = Spec(**orjson.loads(args[0]))
    import uvloop

    result = uvloop.run(run(spec))
    if len(args) > 1:
        with open(args[1], "wb") as out:
            out.write(orjson.dumps(asdict(result)))
        _emit({"event": "result", "file": args[1]})
    else:
        _emit({"event": "result", **asdict(result)})


if __name__ == "__main__":
    main()
