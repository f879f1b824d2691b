"""Building the engine's runtime from the gateway's settings.

The one place that knows both: settings are read from the environment by the
gateway; the engine receives plain values.
"""

from __future__ import annotations

from typing import Any

from engine.config import PaymentsConfig, WebhookConfig
from engine.inputs import ImageLimits
from engine.outbound import OutboundPolicy
from engine.quality import QualityThresholds
from engine.runtime import EngineConfig, Runtime
from gateway.settings import Settings
from storage.objects import StorageConfig

DEV_ENGINE = "local"
PRODUCTION_ENGINE = "gemini"


def gemini_config(settings: Settings, engine: str) -> Any:
    """The Gemini backend's settings, when that backend is in use (imports its SDK only then)."""
    if engine != "gemini" and not settings.gemini_api_key:
        return None
    from engine.backends.gemini import GeminiConfig

    return GeminiConfig(
        api_key=settings.gemini_api_key,
        model=settings.gemini_model,
        base_url=settings.gemini_base_url or None,
        timeout_seconds=settings.gemini_timeout_seconds,
        retry_attempts=settings.gemini_retry_attempts,
        retry_initial_delay=settings.gemini_retry_initial_delay_seconds,
        retry_max_delay=settings.gemini_retry_max_delay_seconds,
        catalog_concurrency=settings.gemini_catalog_concurrency,
    )


def engine_config(settings: Settings, *, default_engine: str = DEV_ENGINE) -> EngineConfig:
    engine = settings.engine or default_engine
    return EngineConfig(
        gemini=gemini_config(settings, engine),
        payments=PaymentsConfig(
            stripe_api_key=settings.stripe_api_key,
            webhook_secret=settings.stripe_webhook_secret,
            base_url=settings.stripe_base_url or None,
            api_version=settings.stripe_api_version,
            timeout_seconds=settings.stripe_timeout_seconds,
        ),
        webhooks=WebhookConfig(
            backoff_scale=settings.webhook_backoff_scale, timeout_seconds=settings.webhook_timeout_seconds
        ),
        sync_wait_seconds=settings.sync_wait_seconds,
        live_backend=engine,
        local_backend_delay_seconds=settings.local_backend_delay_seconds,
        job_deadline_seconds=settings.job_deadline_seconds,
        requeue_after_seconds=settings.requeue_after_seconds,
        sweep_interval_seconds=settings.sweep_interval_seconds,
        retention_seconds=settings.retention_days * 86_400,
        retention_interval_seconds=settings.retention_interval_seconds,
        retention_batch_size=settings.retention_batch_size,
        ledger_verify_interval_seconds=settings.ledger_verify_interval_seconds,
        auth_cache_seconds=settings.auth_cache_seconds,
        database_acquire_timeout_seconds=settings.database_acquire_timeout_seconds,
        database_command_timeout_seconds=settings.database_command_timeout_seconds,
        job_max_retries=settings.job_max_retries,
        job_retry_min_backoff_ms=settings.job_retry_min_backoff_ms,
        job_retry_max_backoff_ms=settings.job_retry_max_backoff_ms,
        refund_on=settings.refund_on,
        presign_ttl_seconds=settings.presign_ttl_seconds,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        idempotency_lock_seconds=settings.idempotency_lock_seconds,
        concurrency_retry_after_seconds=settings.concurrency_retry_after_seconds,
        content_blocked_suspend_after=settings.content_blocked_suspend_after,
        quality=QualityThresholds(
            min_stddev=settings.quality_min_stddev,
            size_tolerance=settings.quality_size_tolerance,
            face_position_tolerance=settings.quality_face_position_tolerance,
            face_max_hash_distance=settings.quality_face_max_hash_distance,
        ),
        content_blocked_window_seconds=settings.content_blocked_window_seconds,
        outbound=OutboundPolicy(
            allow_http=settings.outbound_allow_http,
            allow_hosts=frozenset(settings.outbound_allow_hosts),
            timeout_seconds=settings.fetch_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
            max_bytes=settings.max_image_bytes,
        ),
        image_limits=ImageLimits(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
            max_aspect=settings.max_image_aspect,
        ),
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
        timeout_seconds=settings.s3_timeout_seconds,
    )


def build_runtime(settings: Settings, *, default_engine: str = DEV_ENGINE) -> Runtime:
    return Runtime(
        engine_config(settings, default_engine=default_engine),
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        storage=storage_config(settings),
    )
