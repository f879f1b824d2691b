"""A deployment for the money simulation: ``serve`` and ``worker`` as child processes (the worker
can be SIGKILLed and restarted), its own database, a fake Stripe, and small deadlines so a
killed worker's jobs are failed and refunded by the sweeper within seconds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.support import services
from tests.support.fake_stripe import FakeStripe, serve_fake_stripe
from tests.support.gateway import free_port
from tests.support.image_host import ImageHost
from tests.support.processes import child_env

CLI = [sys.executable, "-m", "gateway.cli"]
STRIPE_KEY = "sk_test_sim"
STRIPE_SECRET = "whsec_sim"
JOB_DEADLINE_SECONDS = 8
"""Longer than a job takes on a loaded machine, short enough that a killed worker's jobs end soon."""


@dataclass
class Deployment:
    """The processes of one deployment, and what the simulation needs to reach them."""

    base_url: str
    database_url: str
    env: dict[str, str]
    stripe: FakeStripe
    logs: Path
    """Where the children's stderr goes (a 500's traceback is there, not in the answer)."""
    serve: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    kills: int = 0
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{args[0]}-{len(self.children)}.log").open("ab") as log:
            child = subprocess.Popen([*CLI, *args], env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        self.children.append(child)
        return child

    def errors(self, limit: int = 40) -> str:
        """The last lines of the children's logs that tell of an error, for a failure's report."""
        lines = [
            f"{log.name}: {line}"
            for log in sorted(self.logs.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if "rror" in line or "Traceback" in line or line.startswith("  File")
        ]
        return "\n".join(lines[-limit:])

    def start_worker(self) -> None:
        self.worker = self._start("worker", "--processes", "1", "--threads", "2")

    def kill_worker(self) -> None:
        """SIGKILL the worker (jobs it holds stay ``running`` until the sweeper expires them), then
        start a new one at once: the simulation goes on while it boots."""
        assert self.worker is not None
        self.worker.kill()
        self.worker.wait()
        self.kills += 1
        self.start_worker()

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


async def _wait_ready(base_url: str, serve: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if serve.poll() is not None:
                raise AssertionError(f"serve exited with {serve.returncode}")
            try:
                async with http.get(base_url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("serve never became ready")


@pytest.fixture
async def deployment(
    redis_url: str, s3: services.S3Endpoint, image_host: ImageHost, tmp_path: Path
) -> AsyncIterator[Deployment]:
    await services.check_postgres()
    database, database_url = await services.create_database()
    port = free_port()
    async with serve_fake_stripe(STRIPE_KEY) as stripe:
        env = child_env(
            database_url=database_url,
            redis_url=redis_url,
            s3=s3,
            image_host=image_host,
            TRYON_LOG_LEVEL="warning",
            TRYON_STRIPE_API_KEY=STRIPE_KEY,
            TRYON_STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
            TRYON_STRIPE_BASE_URL=stripe.base_url,
            TRYON_LOCAL_BACKEND_DELAY_SECONDS="0.2",
            TRYON_JOB_DEADLINE_SECONDS=str(JOB_DEADLINE_SECONDS),
            TRYON_REQUEUE_AFTER_SECONDS="3",
            TRYON_RATE_LIMIT_PER_MIN="1000000",
            TRYON_READ_RATE_LIMIT_PER_MIN="1000000",
            TRYON_SYNC_WAIT_SECONDS="20",
            TRYON_WORKER_SHUTDOWN_SECONDS="1",
            TRYON_JOB_RETRY_MIN_BACKOFF_MS="50",
            TRYON_JOB_RETRY_MAX_BACKOFF_MS="200",
        )
        deployment = Deployment(
            base_url=f"http://127.0.0.1:{port}",
            database_url=database_url,
            env=env,
            stripe=stripe,
            logs=tmp_path,
        )
        try:
            deployment.serve = deployment._start("serve", "--port", str(port))
            deployment.start_worker()
            await _wait_ready(deployment.base_url, deployment.serve)
            yield deployment
        finally:
            deployment.stop()
            await services.drop_database(database)
