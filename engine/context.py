"""The request a piece of work belongs to, carried through the call stack without parameters.

The gateway sets :data:`request_id` for each HTTP request (from a sane ``X-Request-Id`` or a
new one); the engine reads it when it logs, audits or enqueues, and the worker sets it again
from the Dramatiq message, so one customer request can be followed into the job that ran it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.models import JobRecord

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it is safe to log and echo (printable, short), else None."""
    return value if value is not None and _SANE.match(value) else None


def current_request_id() -> str | None:
    return request_id.get()


# Fields every log line of a piece of work carries ------------------------------------------
log_fields: ContextVar[Mapping[str, object]] = ContextVar("log_fields", default=MappingProxyType({}))
"""Ids bound for the current request or job (``job_id``, ``order_id``, ``account_id``, …);
the gateway's log formatter adds them to every line, so engine code logs plain messages."""


def bind(**fields: object) -> None:
    """Add ``fields`` to every later log line of this task (a request or one actor message)."""
    log_fields.set(MappingProxyType({**log_fields.get(), **fields}))


def job_log_fields(job: JobRecord) -> dict[str, object]:
    """What identifies a job in a log line; ids and words only, never inputs or secrets."""
    return {
        "job_id": job.public_id,
        "order_id": job.id,
        "account_id": job.account,
        "dialect": job.dialect,
        "kind": job.kind,
        "backend": job.backend,
        "mode": job.mode,
    }
