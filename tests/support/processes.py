"""The environment a test's own ``serve``/``worker``/``dev`` child processes run with: the session's
PostgreSQL database, Redis, S3 and image host, the local backend and fast sweeps."""

from __future__ import annotations

import os
import secrets

from tests.support import services
from tests.support.gateway import ADMIN_TOKEN
from tests.support.image_host import ImageHost


def child_env(
    *, database_url: str, redis_url: str, s3: services.S3Endpoint, image_host: ImageHost, **extra: str
) -> dict[str, str]:
    """``os.environ`` plus the ``TRYON_*`` settings of a deployment of its own (own Redis namespace)."""
    return {
        **os.environ,
        "TRYON_DATABASE_URL": database_url,
        "TRYON_REDIS_URL": redis_url,
        "TRYON_S3_ENDPOINT": s3.endpoint,
        "TRYON_S3_ACCESS_KEY": s3.access_key,
        "TRYON_S3_SECRET_KEY": s3.secret_key,
        "TRYON_S3_BUCKET": "tryon-test",
        "TRYON_ENGINE": "local",
        "TRYON_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRYON_OUTBOUND_ALLOW_HTTP": "true",
        "TRYON_OUTBOUND_ALLOW_HOSTS": image_host.host_port,
        "TRYON_REDIS_NAMESPACE": "tryon-proc-" + secrets.token_hex(4),
        "TRYON_SWEEP_INTERVAL_SECONDS": "0.5",
        **extra,
    }
