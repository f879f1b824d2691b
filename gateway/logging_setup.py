"""Structured logs: one JSON object per line for machines, or readable lines for a terminal.

``TRYON_LOG_FORMAT`` chooses ``json`` or ``console``; unset, ``serve`` and ``worker`` write
JSON and ``dev`` writes console lines. Every line carries ``time``, ``level``, ``event``
(the message: ``http.request``, ``job.claimed``, ``job.succeeded``, …) and ``logger``, then
whatever ids the line or its context knows: ``request_id`` (from
``engine.context.request_id``), the fields bound for the current job (``job_id``,
``order_id``, ``account_id``, ``dialect``, ``kind``, ``backend``, ``mode``) and the line's own
fields (``route``, ``status``, ``duration_ms``, ``error_code``, ``key_prefix``, …).

Nothing secret belongs in a log line, and nothing in this project puts one there; as a last
line of defence the formatter masks anything shaped like an API key, token, webhook secret
or bearer credential (:func:`redact`), keeping only a short recognisable prefix.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from engine import context

FORMATS = ("json", "console")

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_FIRST = ("request_id", "job_id", "order_id", "account_id", "key_prefix", "dialect")
"""Printed first on console lines (JSON keeps insertion order: these come first there too)."""

_SECRETS = (
    # FitInView keys, admin tokens, webhook secrets, Stripe keys, operator tokens: keep the prefix
    re.compile(
        r"\b((?:fiv_(?:live|test)|whsec|adm|opr|sk_(?:live|test)|rk_(?:live|test))_)[A-Za-z0-9_\-]{6,}"
    ),
    # FtmvAI keys (64 hex) and other long hex secrets: keep 12 characters
    re.compile(r"\b([0-9a-fA-F]{12})[0-9a-fA-F]{28,}\b"),
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")
_CLIENT_SECRET = re.compile(r"(_secret_)[A-Za-z0-9]+")


def redact(text: str) -> str:
    """Mask key-, token- and secret-shaped substrings, keeping a recognisable prefix."""
    for pattern in _SECRETS:
        text = pattern.sub(r"\1…", text)
    text = _BEARER.sub(r"\1…", text)
    return _CLIENT_SECRET.sub(r"\1…", text)


class ContextFilter(logging.Filter):
    """Adds the request id and the ids bound for the current job to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = context.current_request_id()
        for name, value in context.log_fields.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as one flat mapping: time, level, event, logger, then its ids and fields."""
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "event": record.getMessage(),
        "logger": record.name,
    }
    extras = {
        name: value
        for name, value in vars(record).items()
        if name not in _STANDARD and not name.startswith("_") and value is not None
    }
    for name in _FIRST:
        if name in extras:
            fields[name] = extras.pop(name)
    fields.update(extras)
    if record.exc_info:
        fields["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(json.dumps(record_fields(record), default=str, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    """``12:00:00.123 INFO  job.succeeded  request_id=req_… job_id=job_… duration_ms=812``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        moment = fields.pop("time")[11:23]
        level = fields.pop("level").upper()
        event = fields.pop("event")
        fields.pop("logger")
        exception = fields.pop("exception", None)
        pairs = " ".join(f"{name}={value}" for name, value in fields.items())
        line = f"{moment} {level:<5} {event}" + (f"  {pairs}" if pairs else "")
        if exception:
            line += "\n" + exception
        return redact(line)


def make_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(log_format: str, level: str, *, default: str) -> str:
    """Send every logger's records to stderr in ``log_format`` (empty: ``default``).

    Replaces the root logger's handlers (so calling it again, as a uvicorn worker process
    does after its supervisor, changes nothing). Returns the format chosen; raises
    ``ValueError`` for an unknown one.
    """
    chosen = (log_format or default).strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"TRYON_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(make_handler(chosen))
    root.setLevel(level.upper())
    for chatty in ("httpx", "httpcore"):  # google-genai's fallback client logs every URL at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a library's warning is a log line too, in the same format
    return chosen
