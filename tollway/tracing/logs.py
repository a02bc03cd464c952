"""Structured logs: JSON lines on stderr, one ``request`` line per finished request.

The request line carries ids, model, deployment, status, latencies, tokens and
cost; never API keys, headers or bodies. ``setup_logging`` installs the JSON
formatter on the ``tollway`` logger (call it once at start).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson

from tollway.tracing.record import iso_time

__all__ = ["JsonFormatter", "REQUEST_LOGGER", "log_request", "request_fields", "setup_logging",
           "teardown_logging"]

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
