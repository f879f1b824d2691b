"""``serve`` and ``worker`` as separate processes sharing the services, and a worker killed
mid-job: the job still ends (failed, refunded by the sweeper) and the ledger stays exact."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support import services
from tests.support.gateway import ADMIN_TOKEN, fixture_b64, free_port
from tests.support.image_host import ImageHost
from tests.support.processes import child_env

CLI = [sys.executable, "-m", "gateway.cli"]


class Processes:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [*CLI, *args], env={**self.env, **extra_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
async def processes(
    redis_url: str, s3: services.S3Endpoint, image_host: ImageHost
) -> AsyncIterator[Processes]:
    await services.check_postgres()
    database, database_url = await services.create_database()
    env = child_env(
        database_url=database_url,
        redis_url=redis_url,
        s3=s3,
        image_host=image_host,
        TRYON_LOG_LEVEL="warning",
    )
    group = Processes(env)
    try:
        yield group
    finally:
        group.stop_all()
        await services.drop_database(database)


async def wait_ready(http: aiohttp.ClientSession, base: str, child: subprocess.Popen[bytes]) -> None:
    for _ in range(900):  # 90 s: importing the gateway alone took 15 s on a machine under load
        if child.poll() is not None:
            raise AssertionError(f"serve exited: {child.stderr.read().decode() if child.stderr else ''}")
        try:
            async with http.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("serve never became ready")


async def call(http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)


async def new_test_key(http: aiohttp.ClientSession, base: str, name: str) -> str:
    """A new FitInView account's test key, made through ``base``'s admin API."""
    _, account = await call(
        http, "POST", base + "/admin/accounts", ADMIN_TOKEN, {"name": name, "dialect": "fitinview"}
    )
    _, key = await call(
        http, "POST", f"{base}/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": "test"}
    )
    return str(key["key"])


async def poll_until(
    http: aiohttp.ClientSession, url: str, key: str, wanted: set[str], timeout: float, status_field: str = ""
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        _, body = await call(http, "GET", url, key)
        current = body[status_field] if status_field else body
        if current["status"] in wanted:
            return current
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never reached {wanted}: {body}")


async def test_serve_and_worker_processes_and_a_killed_worker(
    processes: Processes, http: aiohttp.ClientSession, image_host: ImageHost
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = processes.start("serve", "--port", str(port))
    worker = processes.start("worker", "--processes", "2", "--threads", "2")
    await wait_ready(http, base, serve)

    status, account = await call(
        http,
        "POST",
        base + "/admin/accounts",
        ADMIN_TOKEN,
        {"name": "Proc", "dialect": "fitinview", "credits": 100},
    )
    assert status == 201
    status, minted = await call(
        http, "POST", f"{base}/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": "live"}
    )
    key = minted["key"]
    request = {"person_url": image_host.url("/person.png"), "garment_urls": [image_host.url("/shirt.png")]}

    # a sync submit: the API process waits on the completion event the worker process publishes
    status, done = await call(http, "POST", base + "/api/v1/tryon", key, request)
    assert status == 200, done
    assert done["status"] == "succeeded", done

    # now a worker that is slow, killed while it holds a job
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    slow_worker = processes.start(
        "worker", "--threads", "1", TRYON_LOCAL_BACKEND_DELAY_SECONDS="60", TRYON_JOB_DEADLINE_SECONDS="3"
    )
    status, submitted = await call(http, "POST", base + "/api/v1/tryon", key, {**request, "wait": False})
    assert status == 200
    job_url = f"{base}/api/v1/tryon/{submitted['job_id']}"
    for _ in range(300):
        if await _job_status(processes, submitted["job_id"]) == "running":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the slow worker never claimed the job")
    slow_worker.kill()
    slow_worker.wait()

    processes.start("worker", "--threads", "1", TRYON_JOB_DEADLINE_SECONDS="3")
    failed = await poll_until(http, job_url, key, {"failed", "succeeded"}, timeout=60)
    assert failed["status"] == "failed"
    assert failed["error_code"] == "internal_error"
    assert failed["credits_refunded"] == 8

    _, balance = await call(http, "GET", f"{base}/admin/accounts/{account['id']}", ADMIN_TOKEN)
    assert balance["credits_remaining"] == 92 == balance["ledger_sum"]

    verify = await asyncio.to_thread(
        subprocess.run, [*CLI, "ledger", "verify"], env=processes.env, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "0 violation(s)" in verify.stdout


async def _job_status(processes: Processes, public_id: str) -> str:
    """The internal status (FitInView shows queued and running alike as "running")."""
    connection = await asyncpg.connect(processes.env["TRYON_DATABASE_URL"])
    try:
        status: str = await connection.fetchval("SELECT status FROM jobs WHERE public_id = $1", public_id)
    finally:
        await connection.close()
    return status


async def test_serve_refuses_to_bill_gemini_without_a_key(processes: Processes) -> None:
    env = {key: value for key, value in processes.env.items() if key != "TRYON_ENGINE"}
    result = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TRYON_GEMINI_API_KEY" in result.stderr


async def test_ftmvai_plan_limits_hold_across_two_gateway_processes(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    servers = [processes.start("serve", "--port", str(port)) for port in ports]
    processes.start("worker", "--threads", "2", TRYON_LOCAL_BACKEND_DELAY_SECONDS="2")
    for base, server in zip(bases, servers, strict=True):
        await wait_ready(http, base, server)

    async def free_account_key(mode: str, credits: int) -> str:
        _, account = await call(
            http,
            "POST",
            bases[0] + "/admin/accounts",
            ADMIN_TOKEN,
            {"name": "Free", "dialect": "ftmvai", "plan": "free", "credits": credits},
        )
        _, minted = await call(
            http, "POST", f"{bases[0]}/admin/accounts/{account['id']}/keys", ADMIN_TOKEN, {"mode": mode}
        )
        return str(minted["key"])

    order = {
        "person_image": fixture_b64("person-astronaut.png"),
        "clothing_image": fixture_b64("garment-shirt-red-stripes.png"),
    }
    # one order at a time on the free plan, whichever process each request reaches
    live = await free_account_key("live", 10)
    first, second = await asyncio.gather(
        call(http, "POST", bases[0] + "/api/v1/generate", live, order),
        call(http, "POST", bases[1] + "/api/v1/generate", live, order),
    )
    assert sorted([first[0], second[0]]) == [202, 429], (first, second)
    refused = first[1] if first[0] == 429 else second[1]
    assert refused["error"]["details"]["limit"] == "concurrent"

    # ten orders an hour, counted together by both processes
    test_key = await free_account_key("test", 0)
    for index in range(10):
        status, created = await call(http, "POST", bases[index % 2] + "/api/v1/generate", test_key, order)
        assert status == 202, created
        await poll_until(
            http,
            f"{bases[index % 2]}/api/v1/orders/{created['order_id']}",
            test_key,
            {"completed", "failed"},
            timeout=30,
            status_field="order",
        )
    status, body = await call(http, "POST", bases[1] + "/api/v1/generate", test_key, order)
    assert status == 429 and body["error"]["details"]["limit"] == "hour"
    status, body = await call(http, "POST", bases[0] + "/api/v1/generate", test_key, order)
    assert status == 429
