"""Building the engine's runtime from the gateway's settings.

The one place that knows both: settings are read from the environment by the
gateway; the engine receives plain values.
"""

from __future__ import annotations

from engine.inputs import ImageLimits
from engine.outbound import OutboundPolicy
from engine.runtime import EngineConfig, Runtime
from gateway.settings import Settings
from storage.objects import StorageConfig

DEV_ENGINE = "local"
PRODUCTION_ENGINE = "gemini"


def engine_config(settings: Settings, *, default_engine: str = DEV_ENGINE) -> EngineConfig:
    return EngineConfig(
        sync_wait_seconds=settings.sync_wait_seconds,
        live_backend=settings.engine or default_engine,
        local_backend_delay_seconds=settings.local_backend_delay_seconds,
        job_deadline_seconds=settings.job_deadline_seconds,
        requeue_after_seconds=settings.requeue_after_seconds,
        sweep_interval_seconds=settings.sweep_interval_seconds,
        job_max_retries=settings.job_max_retries,
        job_retry_min_backoff_ms=settings.job_retry_min_backoff_ms,
        job_retry_max_backoff_ms=settings.job_retry_max_backoff_ms,
        refund_on=settings.refund_on,
        presign_ttl_seconds=settings.presign_ttl_seconds,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        idempotency_lock_seconds=settings.idempotency_lock_seconds,
        concurrency_retry_after_seconds=settings.concurrency_retry_after_seconds,
        outbound=OutboundPolicy(
            allow_http=settings.outbound_allow_http,
            allow_hosts=frozenset(settings.outbound_allow_hosts),
            timeout_seconds=settings.fetch_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
            max_bytes=settings.max_image_bytes,
        ),
        image_limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
        redis_namespace=settings.redis_namespace,
    )


def storage_config(settings: Settings) -> StorageConfig:
    return StorageConfig(
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        bucket=settings.s3_bucket,
        region=settings.s3_region,
        public_url=settings.s3_public_url,
    )


def build_runtime(settings: Settings, *, default_engine: str = DEV_ENGINE) -> Runtime:
    return Runtime(
        engine_config(settings, default_engine=default_engine),
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        storage=storage_config(settings),
    )
