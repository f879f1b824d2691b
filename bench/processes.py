"""The gateway under test as real processes: ``tryon-gateway serve`` and ``worker`` children.

Each gets the ``TRYON_*`` environment of a deployment of its own (its database, a Redis
namespace of its own, the bench bucket), with the per-key rate limits lifted so the load
generator measures the gateway rather than its limiter. Their output goes to a log file in the
run's directory, which is printed when one fails to start.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.services import BUCKET, Endpoints

ROOT = Path(__file__).resolve().parents[1]
UNLIMITED = str(10**9)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_env(endpoints: Endpoints, database_url: str, namespace: str, **extra: str) -> dict[str, str]:
    """``os.environ`` plus one deployment's settings (engine ``local``; limits lifted)."""
    return {
        **os.environ,
        "TRYON_DATABASE_URL": database_url,
        "TRYON_REDIS_URL": endpoints.redis_url,
        "TRYON_S3_ENDPOINT": endpoints.s3_endpoint,
        "TRYON_S3_ACCESS_KEY": endpoints.s3_access_key,
        "TRYON_S3_SECRET_KEY": endpoints.s3_secret_key,
        "TRYON_S3_BUCKET": BUCKET,
        "TRYON_ENGINE": "local",
        "TRYON_REDIS_NAMESPACE": namespace,
        "TRYON_RATE_LIMIT_PER_MIN": UNLIMITED,
        "TRYON_READ_RATE_LIMIT_PER_MIN": UNLIMITED,
        "TRYON_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def new_namespace() -> str:
    return "bench-" + secrets.token_hex(4)


class Child:
    """One child process with its log file; :meth:`stop` sends SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_bytes(self) -> int:
        """Resident memory of the process (VmRSS), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def failed_start(self, what: str) -> RuntimeError:
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        return RuntimeError(f"{self.name} {what}; last lines of {self.log_path}:\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def wait_http(child: Child, url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise child.failed_start(f"exited with {child.popen.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    child.stop()
    raise child.failed_start(f"did not answer {url} within {timeout:.0f} s")


def start_serve(env: dict[str, str], log_dir: Path, *, name: str = "serve") -> tuple[Child, str]:
    """``tryon-gateway serve`` on a free port; returns once ``/readyz`` answers."""
    port = free_port()
    args = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    child = Child(name, args, env, log_dir / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(child, base + "/readyz")
    return child, base


def start_worker(env: dict[str, str], log_dir: Path, *, threads: int, name: str = "worker") -> Child:
    """``tryon-gateway worker`` (one process, ``threads`` threads); returns once it says it is ready."""
    args = [sys.executable, "-m", "gateway.cli", "worker", "--processes", "1", "--threads", str(threads)]
    child = Child(name, args, env, log_dir / f"{name}.log")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            raise child.failed_start(f"exited with {child.popen.returncode}")
        if "worker ready" in child.log_path.read_text(errors="replace"):
            return child
        time.sleep(0.2)
    child.stop()
    raise child.failed_start("did not get ready within 90 s")
