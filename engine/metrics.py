"""Every Prometheus metric the gateway exposes, and the one-line calls that count them.

The definitions live here, in the engine, so the engine counts its own work (submits, job
ends, generations, gate verdicts, webhooks, refusals, credits) without importing the
gateway; ``prometheus_client`` is not HTTP code. The gateway serves the exposition
(``gateway/observability.py``) and counts requests and rate limits.

Label values are bounded on the way in: every label passes through a fixed vocabulary
(unknown words become ``other``), so no id, key, URL or free text can become a series.

Multiprocess mode: ``serve --workers N`` and ``worker --processes N`` run several processes
whose counts must add up. prometheus-client keeps each process's values in files under
``PROMETHEUS_MULTIPROC_DIR`` and merges them at scrape time. It chooses between in-memory and
file-backed values when a value is created, so the metrics are built on first use (not at
import) and the CLI calls :func:`use_multiprocess_dir` before anything counts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

HTTP_REQUEST_DURATION = "http_server_request_duration_seconds"
JOBS_SUBMITTED = "tryon_jobs_submitted_total"
JOBS_FINISHED = "tryon_jobs_finished_total"
JOB_QUEUE_WAIT = "tryon_job_queue_wait_seconds"
GENERATION_DURATION = "tryon_generation_duration_seconds"
QUALITY_GATE = "tryon_quality_gate_total"
SYNC_WAITERS = "tryon_sync_waiters"
QUEUE_DEPTH = "tryon_queue_depth"
QUEUE_OLDEST_AGE = "tryon_queue_oldest_age_seconds"
CREDITS = "tryon_credits_total"
WEBHOOK_DELIVERIES = "tryon_webhook_deliveries_total"
OUTBOUND_REFUSED = "tryon_outbound_refused_total"
RATE_LIMITED = "tryon_rate_limited_total"

METRIC_NAMES = (
    HTTP_REQUEST_DURATION,
    JOBS_SUBMITTED,
    JOBS_FINISHED,
    JOB_QUEUE_WAIT,
    GENERATION_DURATION,
    QUALITY_GATE,
    SYNC_WAITERS,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    CREDITS,
    WEBHOOK_DELIVERIES,
    OUTBOUND_REFUSED,
    RATE_LIMITED,
)
"""The exposed names (counters as exposed, with ``_total``); docs and dashboards use only these."""

# Bounded vocabularies ---------------------------------------------------------------------
OTHER = "other"
DIALECTS = frozenset({"fitinview", "ftmvai", "admin", "console", "none"})
KINDS = frozenset({"tryon", "catalog"})
BACKENDS = frozenset({"stock", "local", "gemini"})
MODES = frozenset({"live", "test"})
STATUSES = frozenset({"succeeded", "failed"})
ERROR_CODES = frozenset(
    {
        "none",
        "content_blocked",
        "no_image",
        "quality_check_failed",
        "model_unavailable",
        "storage_failed",
        "internal_error",
        "no_person_detected",
        "cancelled",
    }
)
MOVEMENTS = frozenset({"debit", "refund", "grant", "purchase", "adjust", "reversal"})
WEBHOOK_OUTCOMES = frozenset({"delivered", "retrying", "failed", "refused"})
RATE_SCOPES = frozenset({"submit", "read", "hour", "day", "concurrent"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OUTPUT_SIZES = ((1024, "1K"), (2048, "2K"))
QUALITY_VERDICTS = (
    ("face missing", "face_missing"),
    ("face moved", "face_moved"),
    ("face changed", "face_changed"),
    ("undecodable", "undecodable"),
    ("wrong size", "wrong_size"),
    ("blank", "blank"),
)
OUTBOUND_REASONS = (
    ("address is not public", "blocked_address"),
    ("non-public address", "blocked_address"),
    ("unusable address", "blocked_address"),
    ("internal", "internal_name"),
    ("fully qualified", "internal_name"),
    ("scheme", "scheme"),
    ("user info", "user_info"),
    ("malformed", "malformed_url"),
    ("too long", "malformed_url"),
    ("whitespace", "malformed_url"),
    ("absolute", "malformed_url"),
    ("port", "malformed_url"),
    ("zone", "malformed_url"),
    ("decimal", "malformed_url"),
)


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    """``value`` when it is a word of ``allowed``, else ``other``: a label never grows unbounded."""
    return value if value is not None and value in allowed else OTHER


def error_label(code: str | None, message: str | None) -> str:
    """A failed job's most telling word: ``generation_failed``'s reason (``model_unavailable``,
    ``content_blocked``, …) says more than the code, which every model failure shares."""
    if code is None:
        return "none"
    if code == "generation_failed" and message in ERROR_CODES:
        return message
    return bounded(code, ERROR_CODES)


def output_size(longest_side: int) -> str:
    for limit, label in OUTPUT_SIZES:
        if longest_side <= limit:
            return label
    return "4K"


def _by_phrase(text: str, table: tuple[tuple[str, str], ...]) -> str:
    lowered = text.lower()
    for phrase, label in table:
        if phrase in lowered:
            return label
    return OTHER


# Definitions -------------------------------------------------------------------------------
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90, 120)
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300)


class _Metrics:
    """The metric objects, built once per process on first use (see the module docstring)."""

    def __init__(self) -> None:
        self.http = Histogram(
            HTTP_REQUEST_DURATION,
            "Time from the request's first byte to the response's end, by route template",
            ["http_route", "http_request_method", "http_response_status_code", "dialect"],
            buckets=_HTTP_BUCKETS,
        )
        self.submitted = Counter(
            JOBS_SUBMITTED.removesuffix("_total"),
            "Jobs accepted (committed and charged)",
            ["dialect", "kind", "backend", "mode"],
        )
        self.finished = Counter(
            JOBS_FINISHED.removesuffix("_total"),
            "Jobs that reached an end state",
            ["kind", "status", "error_code", "backend"],
        )
        self.queue_wait = Histogram(
            JOB_QUEUE_WAIT,
            "Time a job waited between acceptance and a worker claiming it",
            buckets=_WAIT_BUCKETS,
        )
        self.generation = Histogram(
            GENERATION_DURATION,
            "Time of one generation attempt (one backend call with its transient retries)",
            ["backend", "kind", "output_size"],
            buckets=_GENERATION_BUCKETS,
        )
        self.quality = Counter(
            QUALITY_GATE.removesuffix("_total"),
            "Quality-gate verdicts, one per generation attempt",
            ["verdict"],
        )
        self.waiters = Gauge(
            SYNC_WAITERS, "Requests holding a sync wait for their job right now", multiprocess_mode="livesum"
        )
        self.credits = Counter(
            CREDITS.removesuffix("_total"), "Credits moved on the ledger, by kind of movement", ["movement"]
        )
        self.webhooks = Counter(
            WEBHOOK_DELIVERIES.removesuffix("_total"), "Webhook delivery attempts by outcome", ["outcome"]
        )
        self.refused = Counter(
            OUTBOUND_REFUSED.removesuffix("_total"),
            "Outbound URLs or addresses the guard refused (image fetches, webhooks)",
            ["reason"],
        )
        self.rate_limited = Counter(
            RATE_LIMITED.removesuffix("_total"),
            "Requests refused by a rate or concurrency limit",
            ["dialect", "scope"],
        )


_metrics: _Metrics | None = None
_lock = threading.Lock()


def _m() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def use_multiprocess_dir(path: str) -> None:
    """Count into files under ``path`` shared by every process of one command.

    Must run before anything counts in this process (children inherit the variable and
    choose file-backed values when they first count).
    """
    if _metrics is not None:
        raise RuntimeError("metrics are already in use in this process; choose the directory first")
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # chosen at import


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# Counting calls ------------------------------------------------------------------------------
def http_request(*, route: str, method: str, status: int, dialect: str, seconds: float) -> None:
    _m().http.labels(
        route, method if method in METHODS else "_OTHER", str(status), bounded(dialect, DIALECTS)
    ).observe(seconds)


def job_submitted(*, dialect: str, kind: str, backend: str, mode: str) -> None:
    _m().submitted.labels(
        bounded(dialect, DIALECTS), bounded(kind, KINDS), bounded(backend, BACKENDS), bounded(mode, MODES)
    ).inc()


def job_finished(
    *, kind: str, status: str, error_code: str | None, message: str | None, backend: str
) -> None:
    _m().finished.labels(
        bounded(kind, KINDS),
        bounded(status, STATUSES),
        error_label(error_code, message),
        bounded(backend, BACKENDS),
    ).inc()


def queue_wait(seconds: float) -> None:
    _m().queue_wait.observe(max(seconds, 0.0))


def generation(*, backend: str, kind: str, longest_side: int, seconds: float) -> None:
    _m().generation.labels(
        bounded(backend, BACKENDS), bounded(kind, KINDS), output_size(longest_side)
    ).observe(seconds)


def quality_verdict(failure: str | None) -> None:
    """``failure`` is the gate's reason (None: passed)."""
    _m().quality.labels("passed" if failure is None else _by_phrase(failure, QUALITY_VERDICTS)).inc()


@contextmanager
def sync_waiter() -> Iterator[None]:
    """Counts one request holding a sync wait while the block runs."""
    gauge = _m().waiters
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def credits_moved(movement: str, amount: int) -> None:
    """Credits written to the ledger (always counted positive; ``movement`` says which way)."""
    if amount:
        _m().credits.labels(bounded(movement, MOVEMENTS)).inc(abs(amount))


def webhook_delivery(outcome: str) -> None:
    _m().webhooks.labels(bounded(outcome, WEBHOOK_OUTCOMES)).inc()


def outbound_refused(reason: str) -> None:
    _m().refused.labels(_by_phrase(reason, OUTBOUND_REASONS) if reason else OTHER).inc()


def rate_limited(*, dialect: str, scope: str) -> None:
    _m().rate_limited.labels(bounded(dialect, DIALECTS), bounded(scope, RATE_SCOPES)).inc()


# Scrape-time values ----------------------------------------------------------------------------
class QueueSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    broker_messages: int
    """Messages waiting in the Dramatiq queue in Redis (jobs, webhooks, payment events)."""
    queued_jobs: int
    """Jobs ``queued`` in the database: accepted, not yet claimed by a worker."""
    oldest_queued_seconds: float


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: QueueSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            QUEUE_DEPTH,
            "Work waiting: broker messages in Redis, queued jobs in the database",
            labels=["source"],
        )
        depth.add_metric(["broker"], self.snapshot.broker_messages)
        depth.add_metric(["jobs"], self.snapshot.queued_jobs)
        yield depth
        yield GaugeMetricFamily(
            QUEUE_OLDEST_AGE,
            "Age of the oldest job still queued (0 when none is)",
            value=self.snapshot.oldest_queued_seconds,
        )


def exposition(snapshot: QueueSnapshot | None = None) -> bytes:
    """The text exposition: this process's metrics, or every process's in multiprocess mode,
    then the scrape-time queue gauges when given."""
    _m()  # a fresh process still exposes every name (zero-valued where unlabeled)
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if snapshot is not None:
        extra = CollectorRegistry()
        extra.register(_SnapshotCollector(snapshot))
        text += generate_latest(extra)
    return text
