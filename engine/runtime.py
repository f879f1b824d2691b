"""Everything a running engine holds: database, Redis, storage, backends, outbound HTTP.

One :class:`Runtime` per process (API server, worker, or both in ``dev``),
built by the gateway from its settings and started on the event loop that will
use it (asyncpg pools and aiohttp sessions belong to one loop). The engine's
configuration is a plain struct so the engine never reads environment
variables itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import dramatiq
import msgspec
import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from engine.backends import Backend, build_backend
from engine.backends.latency import DelayedBackend
from engine.caller_cache import CallerCache
from engine.completion import CompletionHub
from engine.config import PaymentsConfig, WebhookConfig
from engine.context import current_request_id
from engine.inputs import ImageLimits
from engine.outbound import OutboundPolicy, make_session
from engine.prices import DEFAULT_PRICES
from engine.quality import QualityThresholds
from engine.repository import JobRepository
from ledger.accounts import AccountAdmin
from ledger.audit import AuditLog
from ledger.database import Database
from ledger.operators import OperatorService
from ledger.service import LedgerService
from storage.objects import ObjectStore, StorageConfig

if TYPE_CHECKING:
    from engine.backends.gemini import GeminiConfig


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The engine's share of the settings (meanings and defaults: ``gateway/settings.py``,
    ``docs/configuration.md``); built by ``gateway.wiring`` so defaults live in one place."""

    sync_wait_seconds: float
    live_backend: str
    """The backend for live keys (test keys always get ``stock``)."""
    local_backend_delay_seconds: float
    job_deadline_seconds: float
    requeue_after_seconds: float
    sweep_interval_seconds: float
    job_max_retries: int
    job_retry_min_backoff_ms: int
    job_retry_max_backoff_ms: int
    refund_on: tuple[str, ...]
    presign_ttl_seconds: int
    idempotency_ttl_seconds: int
    idempotency_lock_seconds: int
    concurrency_retry_after_seconds: int
    content_blocked_suspend_after: int
    content_blocked_window_seconds: int
    outbound: OutboundPolicy
    image_limits: ImageLimits
    redis_namespace: str
    quality: QualityThresholds
    webhooks: WebhookConfig
    payments: PaymentsConfig
    auth_cache_seconds: float = 5.0
    """How long an API process may authenticate a token from memory (``engine.caller_cache``)."""
    retention_seconds: float = 7 * 86_400.0
    """How long a finished job's stored images are kept (from its creation)."""
    retention_interval_seconds: float = 3600.0
    retention_batch_size: int = 100
    ledger_verify_interval_seconds: float = 86_400.0
    database_acquire_timeout_seconds: float | None = None
    database_command_timeout_seconds: float | None = None
    gemini: GeminiConfig | None = None
    """Set when live keys (or any caller) may use the ``gemini`` backend."""
    """Prefix of every Redis key and channel (queue, limits, locks, events): deployments or test
    runs sharing one Redis stay apart."""


class Runtime:
    def __init__(
        self,
        config: EngineConfig,
        *,
        database_url: str,
        redis_url: str,
        storage: StorageConfig,
    ) -> None:
        self.config = config
        self.db = Database(
            database_url,
            acquire_timeout=config.database_acquire_timeout_seconds,
            command_timeout=config.database_command_timeout_seconds,
        )
        self.redis: aioredis.Redis = aioredis.from_url(redis_url)
        self.redis_url = redis_url
        self.store = ObjectStore(storage)
        self.hub = CompletionHub(self.redis, config.redis_namespace)
        self.callers = CallerCache(self.redis, config.redis_namespace, ttl_seconds=config.auth_cache_seconds)
        self.ledger = LedgerService(self.db)
        self.audit = AuditLog(self.db)
        self.operators = OperatorService(self.db, self.audit)
        self.accounts = AccountAdmin(self.ledger, self.audit, price_names=DEFAULT_PRICES)
        self.jobs = JobRepository(self.db)
        self._backends: dict[str, Backend] = {}
        self._http: aiohttp.ClientSession | None = None
        self.job_sender: Callable[[int, str | None], object] | None = None
        """Sends ``job.submitted`` for a job id (and the submitting request's id); set when the
        actors are declared on a broker."""
        self.job_actor: dramatiq.Actor[..., Any] | None = None
        """The ``job.submitted`` actor (set with ``job_sender``): :meth:`send_job` builds its messages."""
        self._dispatch: Any = None
        self.payment_event_sender: Callable[[int], object] | None = None
        self.webhook_sender: dramatiq.Actor[..., Any] | None = None
        self._started_hub = False

    async def start(self, *, listen_for_completions: bool = True) -> None:
        await self.db.start()
        if listen_for_completions and not self._started_hub:
            await self.hub.start()
            await self.callers.start()
            self._started_hub = True

    async def close(self) -> None:
        if self._started_hub:
            await self.hub.close()
            await self.callers.close()
            self._started_hub = False
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.store.close()
        await self.db.close()
        await self.redis.aclose()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The guarded outbound session (image fetches; later webhooks), made on first use."""
        if self._http is None or self._http.closed:
            self._http = make_session(self.config.outbound)
        return self._http

    def enqueue_job(self, job_id: int) -> None:
        """Send a committed job to the workers (a failure here is healed by the sweeper)."""
        if self.job_sender is None:
            raise RuntimeError("no broker: engine.worker.make_broker() was not called for this runtime")
        self.job_sender(job_id, current_request_id())

    async def send_job(self, job_id: int) -> None:
        """:meth:`enqueue_job` without blocking the event loop (the submit path's enqueue).

        The broker's own ``send`` is a synchronous Redis round trip that stalls every request of the
        process while it waits; this sends the same message (built by the actor, with the middleware's
        enqueue hooks) through the broker's own dispatch script on the async Redis client instead, as
        :meth:`dramatiq.brokers.redis.RedisBroker.enqueue` does. Any other broker: :meth:`enqueue_job`.
        """
        actor = self.job_actor
        broker = actor.broker if actor is not None else None
        if actor is None or not isinstance(broker, RedisBroker):
            self.enqueue_job(job_id)
            return
        request_id = current_request_id()
        message = actor.message_with_options(
            args=(job_id,), kwargs={"request_id": request_id} if request_id else None
        )
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        if self._dispatch is None:
            # read once per process (a script call of its own), not on the event loop: until it has
            # been read, every send comes back here
            await asyncio.to_thread(broker._max_unpack_size)
            self._dispatch = self.redis.register_script(broker.scripts["dispatch"].script)
        broker.emit_before("enqueue", message, None)
        await self._dispatch(
            keys=[broker.namespace],
            args=[
                "enqueue",
                current_millis(),
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                broker._should_do_maintenance("enqueue"),
                broker._max_unpack_size(),  # type: ignore[no-untyped-call]
                message.options["redis_message_id"],
                message.encode(),
            ],
        )
        broker.emit_after("enqueue", message, None)

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            backend = build_backend(name, gemini=self.config.gemini)
            if name == "local" and self.config.local_backend_delay_seconds > 0:
                backend = DelayedBackend(backend, self.config.local_backend_delay_seconds)
            self._backends[name] = backend
        return self._backends[name]
