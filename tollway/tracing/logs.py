"""Structured logs: JSON lines on stderr, one ``request`` line per finished request.

The request line carries ids, model, deployment, status, latencies, tokens and
cost; never API keys, headers or bodies. ``setup_logging`` installs the JSON
formatter on the ``tollway`` logger (call it once at start).

``RequestLines`` (and ``log_requests``) write a batch of request lines: when
``setup_logging``'s handler is the only place they would go, they are formatted
here (the same JSON, key for key) and the batch goes out with one ``write`` under
the handler's lock instead of one trip through ``logging`` per request; otherwise
they are logged one by one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson

from tollway.tracing.record import iso_time

__all__ = ["JsonFormatter", "REQUEST_LOGGER", "RequestLines", "log_request", "log_requests",
           "request_fields", "setup_logging", "teardown_logging"]

REQUEST_LOGGER = logging.getLogger("tollway.request")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields from ``extra={"fields": {...}}`` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send the ``tollway`` loggers to ``stream`` (stderr) as JSON lines at ``level``."""
    logger = logging.getLogger("tollway")
    for handler in list(logger.handlers):
        if getattr(handler, "_tollway_json", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._tollway_json = True  # type: ignore[attr-defined]
    handler._tollway_before = (logger.level, logger.propagate)  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(_LEVELS[level])
    logger.propagate = False
    return handler


def teardown_logging(handler: logging.Handler) -> None:
    """Undo ``setup_logging``: remove the handler, restore level and propagation."""
    logger = logging.getLogger("tollway")
    logger.removeHandler(handler)
    level, propagate = getattr(handler, "_tollway_before", (logging.NOTSET, True))
    logger.setLevel(level)
    logger.propagate = propagate


def request_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The flat, secret-free fields of a request line, from a trace record."""
    timings = record["timings"]
    usage = record.get("usage") or {}
    cost = record.get("cost") or {}
    error = record.get("error") or {}
    return {
        "event": "request",
        "request_id": record["id"],
        "client_request_id": record.get("client_request_id"),
        "account_id": record.get("account_id"),
        "key_id": record.get("key_id"),
        "model": record.get("model"),
        "served_model": record.get("served_model"),
        "deployment": record.get("deployment"),
        "stream": record.get("stream"),
        "status": record.get("status"),
        "error_code": error.get("code"),
        "finish_reason": record.get("finish_reason"),
        "attempts": len(record.get("attempts") or ()),
        "client_disconnected": record.get("client_disconnected"),
        "ttft_ms": timings.get("ttft_ms"),
        "total_ms": timings.get("total_ms"),
        "output_tokens_per_second": timings.get("output_tokens_per_second"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cost_usd": cost.get("total_cost_usd"),
    }


def log_request(record: dict[str, Any], logger: logging.Logger = REQUEST_LOGGER) -> None:
    """Emit the request line (info; warning for 5xx) if the level lets it through."""
    level = logging.WARNING if (record.get("status") or 0) >= 500 else logging.INFO
    if not logger.isEnabledFor(level):
        return
    logger.log(level, "request", extra={"fields": request_fields(record)})


def _direct_stream(handler: logging.Handler | None, logger: logging.Logger) -> TextIO | None:
    """The stream to write request lines to directly, if that is what logging would do.

    That is: ``handler`` is ``setup_logging``'s JSON stream handler, it is the only
    handler a ``logger`` record reaches, and no filter could drop or alter a record.
    """
    if (
        handler is None
        or not getattr(handler, "_tollway_json", False)
        or not isinstance(handler, logging.StreamHandler)
        or type(handler.formatter) is not JsonFormatter
        or handler.filters
        or handler.terminator != "\n"
        or logger.filters
        or logger.disabled
    ):
        return None
    seen: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        seen.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if seen != [handler]:
        return None
    return handler.stream  # type: ignore[no-any-return]


class RequestLines:
    """One batch of request lines: ``add`` each finished request, then ``write()``.

    Same lines, levels and threshold as ``log_request``. When ``handler`` (from
    ``setup_logging``) is the only place a ``logger`` record would go, ``add``
    formats the line itself (bytes, key for key what ``JsonFormatter`` writes) and
    ``write`` sends the batch with one ``write`` and one ``flush`` under the
    handler's lock; otherwise ``add`` logs through ``logging`` at once.
    """

    def __init__(
        self, handler: logging.Handler | None = None, logger: logging.Logger = REQUEST_LOGGER
    ) -> None:
        self.logger = logger
        self.handler = handler
        self.stream = _direct_stream(handler, logger)
        self.floor = handler.level if handler is not None else logging.NOTSET
        self.lines: list[bytes] = []

    def add(self, record: dict[str, Any], ts: float) -> None:
        """The line of one trace record; ``ts`` is the Unix time the request ended."""
        if self.stream is None:
            log_request(record, self.logger)
            return
        level = logging.WARNING if (record.get("status") or 0) >= 500 else logging.INFO
        if level < self.floor or not self.logger.isEnabledFor(level):
            return
        self.lines.append(orjson.dumps({
            "ts": iso_time(ts),
            "level": "warning" if level == logging.WARNING else "info",
            "logger": self.logger.name,
            "msg": "request",
            **request_fields(record),
        }, default=str))

    def write(self) -> int:
        """Write the collected lines (one ``write``); return how many."""
        lines, self.lines = self.lines, []
        if not lines or self.stream is None or self.handler is None:
            return 0
        lines.append(b"")
        text = b"\n".join(lines).decode()
        self.handler.acquire()
        try:
            self.stream.write(text)
            self.stream.flush()
        finally:
            self.handler.release()
        return len(lines) - 1


def log_requests(
    records: Iterable[tuple[dict[str, Any], float]],
    handler: logging.Handler | None = None,
    logger: logging.Logger = REQUEST_LOGGER,
) -> None:
    """The request lines of ``(record, Unix time of the request's end)`` pairs, batched.

    See ``RequestLines``: with ``setup_logging``'s ``handler`` as the only
    destination, one ``write`` for the batch; else one ``log_request`` per record.
    """
    batch = RequestLines(handler, logger)
    for record, ts in records:
        batch.add(record, ts)
    batch.write()
