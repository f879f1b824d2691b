"""The internal job model that every dialect translates to and from."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import msgspec

from engine.backends.base import OutputFormat


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class Stage(StrEnum):
    """Where a job really is; FtmvAI's progress and ETA are derived from it."""

    ACCEPTED = "accepted"
    STARTED = "started"
    INPUTS_LOADED = "inputs_loaded"
    MODEL_CALLED = "model_called"
    RESULT_STORED = "result_stored"
    DONE = "done"


STAGE_PROGRESS: dict[Stage, int] = {
    Stage.ACCEPTED: 0,
    Stage.STARTED: 5,
    Stage.INPUTS_LOADED: 15,
    Stage.MODEL_CALLED: 30,
    Stage.RESULT_STORED: 95,
    Stage.DONE: 100,
}


class ImageSource(msgspec.Struct, frozen=True, kw_only=True):
    """One input image as the caller gave it: base64 text or a URL to fetch."""

    field: str
    base64: str | None = None
    url: str | None = None


class TryonOptions(msgspec.Struct, frozen=True, kw_only=True):
    size_label: str
    """The dialect's own size word (FitInView ``1K``/``2K``/``4K``), kept for display."""
    longest_side: int
    output_format: OutputFormat = "png"
    prompt: str | None = None
    style_hint: str | None = None
    negative_prompt: str | None = None


class TryonCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A validated try-on request, ready for the engine."""

    person: ImageSource
    garments: tuple[ImageSource, ...]
    options: TryonOptions
    price_name: str
    metadata: dict[str, Any] | None = None
    seed: int | None = None
    webhook_url: str | None = None


class CatalogCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A validated product-catalog request: one product photo into ``quantity`` shots."""

    product: ImageSource
    quantity: int
    size_label: str
    longest_side: int
    output_format: OutputFormat = "jpeg"
    price_name: str
    seed: int | None = None


class IdempotencyKey(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    fingerprint: str
    """A hash of the request as parsed: the same JSON after parsing hashes the same."""


class StoredImage(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    role: Literal["person", "garment", "product", "result"]
    content_type: str
    width: int
    height: int


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the ``jobs`` table: the one job model every dialect translates."""

    id: int
    """The per-deployment order number (FtmvAI's ``order_id``)."""
    public_id: str
    """``job_…``, FitInView's ``job_id``."""
    account: int
    api_key: int
    dialect: str
    kind: str
    mode: str
    backend: str
    status: JobStatus
    stage: Stage
    progress: int
    params: dict[str, Any]
    inputs: list[StoredImage]
    results: list[StoredImage]
    error_code: str | None
    error_message: str | None
    cost_credits: int
    credits_refunded: int
    metadata: dict[str, Any] | None
    seed: int | None
    webhook_url: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    duration_ms: int | None
    report: dict[str, Any] = {}
    rerun_of: int | None = None
    """The job this one re-runs (an operator's free re-run of a failed job), if any."""
    purged_at: datetime | None = None
    """When retention deleted the job's stored images (the record and its money stay)."""


class FinishedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker publishes once a job's finishing transaction commits: the job as committed and
    the account's balance just after, so a held sync wait can answer without a database read."""

    job: JobRecord
    balance: int | None = None


class JobView(JobRecord, frozen=True, kw_only=True):
    """A job as the dialects see it: the record plus freshly signed links to its images."""

    result_urls: list[str] = []
    input_urls: list[str] = []
    purged: bool = False
    """Retention deleted its images: no links, whatever its status."""


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    job: JobView
    credits_remaining: int
    replayed: bool = False


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobView]
    next_cursor: str | None


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    """An operator's job search: every given filter must match; newest first below ``before_id``."""

    account: int | None = None
    api_key: int | None = None
    dialect: str | None = None
    kind: str | None = None
    status: str | None = None
    error_code: str | None = None
    backend: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 50


CANCELLED = "cancelled"
"""The ``error_code`` of a job an operator cancelled (always refunded)."""
GOODWILL_PREFIX = "goodwill:"
"""The ledger reference of an operator's goodwill refund is this plus the job's public id."""
