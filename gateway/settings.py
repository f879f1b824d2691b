"""One typed settings object, read from ``TRYON_*`` environment variables.

Every default works for the embedded mode (``tryon-gateway dev`` overrides the
service URLs with the ports of its own children). Every window, deadline,
timeout and backoff is a setting so tests run the real logic fast. The full
list, with meanings, is ``docs/configuration.md``; ``tests/gateway/test_settings.py``
keeps the two in step.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

ENV_PREFIX = "TRYON_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A ``TRYON_*`` variable holds a value of the wrong type."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # services
    database_url: str = "postgresql://postgres@127.0.0.1:5432/tryon"
    database_acquire_timeout_seconds: float = 5.0
    database_command_timeout_seconds: float = 10.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_public_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = "tryon"
    s3_secret_key: str = "tryon-secret"
    s3_bucket: str = "tryon"
    s3_timeout_seconds: float = 10.0

    # operation
    admin_token: str = ""
    console_session_seconds: int = 28_800
    engine: str = ""
    gemini_api_key: str = ""
    gemini_model: str = "gemini-3-pro-image-preview"
    gemini_base_url: str = ""
    gemini_timeout_seconds: float = 120.0
    gemini_retry_attempts: int = 4
    gemini_retry_initial_delay_seconds: float = 1.0
    gemini_retry_max_delay_seconds: float = 30.0
    gemini_catalog_concurrency: int = 4
    host_dialects: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = ""
    metrics_token: str = ""
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    metrics_dir: str = ""

    # FitInView behaviour
    sync_wait_seconds: float = 90.0
    rate_limit_per_min: int = 20
    read_rate_limit_per_min: int = 300
    rate_limit_window_seconds: int = 60
    auth_cache_seconds: float = 5.0
    idempotency_ttl_seconds: int = 86_400
    idempotency_lock_seconds: int = 120

    # webhooks and payments
    webhook_backoff_scale: float = 1.0
    webhook_timeout_seconds: float = 10.0
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_base_url: str = ""
    stripe_api_version: str = "2025-09-30.clover"
    stripe_timeout_seconds: float = 30.0

    # FtmvAI behaviour
    concurrency_retry_after_seconds: int = 10

    # inputs and outbound calls
    outbound_allow_http: bool = False
    outbound_allow_hosts: tuple[str, ...] = ()
    max_image_bytes: int = 15_000_000
    max_image_pixels: int = 40_000_000
    max_image_side: int = 12_000
    max_image_aspect: float = 20.0
    max_body_bytes: int = 90_000_000
    fetch_timeout_seconds: float = 10.0
    fetch_max_redirects: int = 3

    # storage
    presign_ttl_seconds: int = 86_400
    retention_days: float = 7.0
    retention_interval_seconds: float = 3600.0
    retention_batch_size: int = 100
    ledger_verify_interval_seconds: float = 86_400.0

    # engine
    local_backend_delay_seconds: float = 0.0
    redis_namespace: str = "tryon"
    worker_shutdown_seconds: float = 30.0
    job_deadline_seconds: int = 600
    requeue_after_seconds: int = 30
    sweep_interval_seconds: float = 15.0
    job_max_retries: int = 3
    job_retry_min_backoff_ms: int = 1_000
    job_retry_max_backoff_ms: int = 30_000
    quality_min_stddev: float = 6.0
    quality_size_tolerance: float = 0.02
    quality_face_position_tolerance: float = 0.08
    quality_face_max_hash_distance: int = 18
    content_blocked_suspend_after: int = 5
    content_blocked_window_seconds: int = 3600
    refund_on: tuple[str, ...] = (
        "no_image",
        "quality_check_failed",
        "model_unavailable",
        "no_person_detected",
        "storage_failed",
        "internal_error",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``TRYON_*`` variables, then apply keyword overrides."""
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse(name, raw, hints[name])
        values.update(overrides)
        return cls(**values)

    @classmethod
    def documented_variables(cls) -> list[str]:
        return [ENV_PREFIX + name.upper() for name in cls.__struct_fields__]

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


def _parse(name: str, raw: str, hint: Any) -> Any:
    variable = ENV_PREFIX + name.upper()
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(f"{variable} must be one of 1/true/yes or 0/false/no, not {raw!r}")
    if typing.get_origin(hint) is tuple or isinstance(hint, types.GenericAlias):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    try:
        return msgspec.convert(raw.strip(), hint, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{variable}: {exc}") from None
