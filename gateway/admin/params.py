"""The admin API's parameter and body field types, with their limits stated once.

Litestar validates path and query parameters against these constraints and msgspec validates
bodies, so a malformed id, a cursor with any bytes in it, a negative limit or a date that
doesn't parse is a 400 naming the field before any handler runs — and ``/admin/openapi.json``,
generated from the same annotations, says exactly what is accepted.

Optional query parameters put ``None`` inside ``Annotated`` (``Annotated[int | None, Parameter(…)]``):
Litestar enforces a Parameter's limits there, but not on ``Annotated[…] | None``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from litestar.params import Parameter, QueryParameter

MAX_ID = 2**63 - 1
MAX_CREDITS = 1_000_000_000
"""The largest credit movement one request may make (well inside PostgreSQL's integer)."""

Id = Annotated[int, Parameter(ge=1, le=MAX_ID, description="A positive integer id")]
IdFilter = Annotated[int | None, Parameter(ge=1, le=MAX_ID, description="A positive integer id")]
Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size, 1 to 200")]
Cursor = Annotated[
    str | None,
    Parameter(
        pattern=r"^[0-9]{1,18}$",
        max_length=18,
        description="The next_cursor of the previous page (opaque; digits)",
    ),
]
When = Annotated[datetime | None, Parameter(description="An ISO 8601 date-time, e.g. 2026-12-01T00:00:00Z")]
SearchText = Annotated[
    str | None,
    Parameter(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$", description="Search text"),
]

# body fields -----------------------------------------------------------------------------
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
    ),
]
"""A display name: 1-200 characters, no control characters, not only blanks. (The non-blank one is
spelled as a negated class of blanks and control characters rather than with ``\\S``, which
matches NUL, and PostgreSQL can't store NUL.)"""
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
"""Why an operator did something: required for money, refunds, cancels, disables and erasure."""
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^\s@\x00]+@[^\s@\x00]+$")]
Credits = Annotated[int, msgspec.Meta(ge=-MAX_CREDITS, le=MAX_CREDITS)]
Price = Annotated[int, msgspec.Meta(ge=0, le=MAX_CREDITS)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=30 * 86_400)]
OPERATOR_NAME_LENGTH = 64
"""An operator's name is an audit target id (``audit_log.target_id`` keeps 64 characters)."""
OperatorName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=OPERATOR_NAME_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"),
]
_OPERATOR = Parameter(
    min_length=1,
    max_length=OPERATOR_NAME_LENGTH,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
    description="Operator",
)
OperatorPathName = Annotated[str, _OPERATOR]
OperatorFilter = Annotated[str | None, _OPERATOR]
Target = Annotated[
    str | None,
    Parameter(
        max_length=80,
        pattern=r"^(account|key|job|operator|webhook|payment)(:[A-Za-z0-9._@-]{1,64})?$",
        description="type or type:id, e.g. job:42, account:7, operator:alice",
    ),
]
Action = Annotated[
    str | None, Parameter(max_length=64, pattern=r"^[a-z_]+(\.[a-z_]+)*$", description="e.g. job.refund")
]

# money and usage filters -----------------------------------------------------------------
LedgerKind = Annotated[
    Literal["grant", "debit", "refund", "adjust", "purchase", "reversal"] | None,
    Parameter(description="Only entries of this kind"),
]
UsageGroup = Annotated[
    Literal["day", "account", "dialect", "backend"], Parameter(description="One row per UTC day, account, …")
]
FromDay = Annotated[
    date | None, QueryParameter(name="from", description="First UTC day, inclusive, e.g. 2026-11-01")
]
"""``from`` is a Python keyword: declare it as ``from_: FromDay`` (errors then name ``from_``)."""
ToDay = Annotated[date | None, Parameter(description="Last UTC day, inclusive, e.g. 2026-11-30")]
PaymentStatus = Annotated[
    Literal[
        "pending",
        "succeeded",
        "processing",
        "requires_action",
        "requires_payment_method",
        "requires_confirmation",
        "requires_capture",
        "canceled",
        "declined",
    ]
    | None,
    Parameter(description="Only purchases in this status"),
]
WebhookStatus = Annotated[
    Literal["pending", "delivered", "failed"] | None, Parameter(description="Only events in this status")
]

# jobs (gateway/admin/jobs.py) --------------------------------------------------------------
JobRef = Annotated[
    str,
    Parameter(
        pattern=r"^(job_[0-9a-f]{1,40}|[0-9]{1,18})$",
        max_length=44,
        description="A job's public id (job_…) or its integer order id",
    ),
]
JobStatusFilter = Annotated[
    Literal["queued", "running", "succeeded", "failed"] | None,
    Parameter(description="Only jobs in this status"),
]
JobKindFilter = Annotated[Literal["tryon", "catalog"] | None, Parameter(description="Only jobs of this kind")]
JobDialectFilter = Annotated[
    Literal["fitinview", "ftmvai"] | None, Parameter(description="Only jobs submitted in this dialect")
]
JobBackendFilter = Annotated[
    Literal["local", "gemini", "stock"] | None, Parameter(description="Only jobs run by this backend")
]
ErrorCodeFilter = Annotated[
    str | None,
    Parameter(pattern=r"^[a-z][a-z_]{0,63}$", max_length=64, description="e.g. cancelled, generation_failed"),
]


def before_id(cursor: str | None) -> int | None:
    """A cursor (validated as digits by :data:`Cursor`) as the id to continue below."""
    return int(cursor) if cursor else None
