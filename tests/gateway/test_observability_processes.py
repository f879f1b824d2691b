"""Metrics and logs across real processes: ``serve --workers 2`` and ``worker --processes 2``.

The counts a scrape returns are the sum over each command's processes (prometheus-client's
multiprocess mode), whichever process answers the scrape; the worker serves its own on
``TRYON_METRICS_PORT``. The JSON lines both commands write follow one try-on from the API
request to the worker's ``job.succeeded`` by its ``X-Request-Id``, and hold no secret."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.test_metrics import parse, value
from tests.support import services
from tests.support.gateway import ADMIN_TOKEN, free_port
from tests.support.image_host import ImageHost
from tests.support.processes import child_env

CLI = [sys.executable, "-m", "gateway.cli"]
TOKEN = "metrics-" + secrets.token_hex(8)


class Commands:
    """Child processes writing stderr (their log lines) to files, stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.children: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        child = subprocess.Popen(
            [*CLI, *args], env={**self.env, **extra_env}, stdout=subprocess.DEVNULL, stderr=log
        )
        self.children.append((child, log))
        return child

    def lines(self, name: str) -> list[str]:
        return [line for line in (self.logs / f"{name}.log").read_text().splitlines() if line.strip()]

    def stop_all(self) -> None:
        for child, _ in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child, log in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            log.close()


@pytest.fixture
async def commands(
    redis_url: str, s3: services.S3Endpoint, image_host: ImageHost, tmp_path: Path
) -> AsyncIterator[Commands]:
    await services.check_postgres()
    database, database_url = await services.create_database()
    env = child_env(
        database_url=database_url,
        redis_url=redis_url,
        s3=s3,
        image_host=image_host,
        TRYON_LOG_LEVEL="info",
        TRYON_LOG_FORMAT="",  # the commands' default: JSON
        TRYON_METRICS_TOKEN=TOKEN,
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    group = Commands(env, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        await services.drop_database(database)


async def get(url: str, token: str | None = None, **headers: str) -> tuple[int, Any, dict[str, str]]:
    """One request on its own connection, so uvicorn's workers share the requests."""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.get(url, headers=headers) as response:
            text = await response.text()
            return response.status, text, {k.lower(): v for k, v in response.headers.items()}


async def wait_until_answering(
    url: str, child: subprocess.Popen[bytes], commands: Commands, name: str
) -> None:
    deadline = asyncio.get_running_loop().time() + 240  # five processes start on a shared 2-core machine
    answer: object = None
    while asyncio.get_running_loop().time() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"{name} exited: " + "\n".join(commands.lines(name)[-20:]))
        try:
            status, answer, _ = await get(url, TOKEN)
            if status == 200:
                return
        except aiohttp.ClientError as exc:
            answer = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never answered {url}: {answer}\n" + "\n".join(commands.lines(name)[-20:]))


async def test_metrics_and_logs_across_serve_and_worker_processes(
    commands: Commands, http: aiohttp.ClientSession, image_host: ImageHost, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    serve = commands.start(
        "serve",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        TRYON_METRICS_DIR=str(tmp_path / "serve-metrics"),
    )
    worker = commands.start(
        "worker",
        "worker",
        "--processes",
        "2",
        "--threads",
        "2",
        TRYON_METRICS_PORT=str(metrics_port),
        TRYON_METRICS_DIR=str(tmp_path / "worker-metrics"),
    )
    await wait_until_answering(base + "/readyz", serve, commands, "serve")
    await wait_until_answering(f"http://127.0.0.1:{metrics_port}/metrics", worker, commands, "worker")

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.post(
        base + "/admin/accounts", json={"name": "Obs", "dialect": "fitinview", "credits": 100}, headers=admin
    ) as response:
        account = await response.json()
    async with http.post(
        f"{base}/admin/accounts/{account['id']}/keys", json={"mode": "live"}, headers=admin
    ) as response:
        minted = await response.json()
    key = minted["key"]

    request_id = "proc-" + secrets.token_hex(6)
    async with http.post(
        base + "/api/v1/tryon",
        json={"person_url": image_host.url("/person.png"), "garment_urls": [image_host.url("/shirt.png")]},
        headers={"Authorization": f"Bearer {key}", "X-Request-Id": request_id},
    ) as response:
        done = await response.json()
        assert response.status == 200 and done["status"] == "succeeded", done
        assert response.headers["X-Request-Id"] == request_id

    reads = 8
    for _ in range(reads):
        status, _, headers = await get(base + "/api/v1/account", key)
        assert status == 200 and headers["x-request-id"].startswith("req_")

    # serve: the sum over both uvicorn workers, whichever one answers the scrape
    status, text, _ = await get(base + "/metrics")
    assert status == 401
    for _ in range(3):
        status, text, _ = await get(base + "/metrics", TOKEN)
        assert status == 200, text
        api = parse(text)
        account_reads = value(
            api,
            "http_server_request_duration_seconds_count",
            http_route="/api/v1/account",
            http_request_method="GET",
            http_response_status_code="200",
        )
        assert account_reads == reads, text
        assert value(api, "tryon_jobs_submitted_total", dialect="fitinview", mode="live") == 1
        assert value(api, "tryon_credits_total", movement="debit") == 8
        assert value(api, "tryon_queue_depth", source="jobs") == 0

    # worker: its own port, behind the same bearer, summing both worker processes
    status, _, _ = await get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 401
    for _ in range(100):
        status, text, _ = await get(f"http://127.0.0.1:{metrics_port}/metrics", TOKEN)
        assert status == 200
        jobs = parse(text)
        if value(jobs, "tryon_jobs_finished_total", status="succeeded") == 1:
            break
        await asyncio.sleep(0.1)
    assert value(jobs, "tryon_jobs_finished_total", status="succeeded", error_code="none", kind="tryon") == 1
    assert value(jobs, "tryon_job_queue_wait_seconds_count") == 1
    assert value(jobs, "tryon_generation_duration_seconds_count", backend="local", output_size="1K") == 1
    assert value(jobs, "tryon_quality_gate_total", verdict="passed") == 1

    # the logs: JSON lines, one try-on followed from the request to the worker's "succeeded"
    for _ in range(100):
        worker_events = json_lines(commands.lines("worker"))
        if any(event["event"] == "job.succeeded" for event in worker_events):
            break
        await asyncio.sleep(0.1)
    serve_events = json_lines(commands.lines("serve"))
    followed = [event for event in serve_events + worker_events if event.get("request_id") == request_id]
    by_event = {event["event"]: event for event in followed}
    for step in (
        "http.request",
        "job.accepted",
        "job.claimed",
        "job.generated",
        "job.quality_gate",
        "job.succeeded",
    ):
        assert step in by_event, (step, [event["event"] for event in followed])
    assert by_event["http.request"]["route"] == "/api/v1/tryon" and by_event["http.request"]["status"] == 200
    assert by_event["http.request"]["key_prefix"] == key[:12] + "…"
    assert by_event["job.succeeded"]["job_id"] == done["job_id"]
    assert by_event["job.succeeded"]["account_id"] == account["id"]
    assert {event["event"] for event in worker_events if event.get("request_id") == request_id} >= {
        "job.claimed",
        "job.succeeded",
    }

    for line in commands.lines("serve") + commands.lines("worker"):
        for secret in (
            key,
            ADMIN_TOKEN,
            TOKEN,
            str(minted.get("webhook_secret")),
            commands.env["TRYON_S3_SECRET_KEY"],
        ):
            assert secret not in line, line


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line a command writes is one JSON object."""
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return events
