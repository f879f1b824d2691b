"""A real gateway for tests: the Litestar app served by uvicorn on a free port, with its
Dramatiq worker and sweeper in-process (as ``tryon-gateway dev`` runs them), against the
session's real PostgreSQL, Redis and S3. Each instance gets its own Redis namespace so
instances with different settings never take each other's jobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import socket
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from engine.runtime import Runtime
from gateway.app import create_app
from gateway.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADMIN_TOKEN = "adm_test_" + secrets.token_hex(8)
STOP_GRACE_SECONDS = 5
"""How long a stopping test gateway lets requests in flight finish (``serve`` allows 10 s)."""
log = logging.getLogger(__name__)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_b64(name: str) -> str:
    return base64.b64encode(fixture_bytes(name)).decode()


def fitinview_tryon_body(**extra: Any) -> dict[str, Any]:
    """An async FitInView try-on of the fixture person and shirt, inline (``extra`` overrides)."""
    return {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningGateway:
    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, with_worker=True, worker_threads=4)
        self.runtime: Runtime = self.app.state.runtime
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=STOP_GRACE_SECONDS,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # pytest keeps its own SIGINT/SIGTERM handlers: uvicorn (0.29+) installs its own for the
        # time serve() runs, in capture_signals(), and would re-raise a signal it caught on exit.
        self._server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(500):
            if self._server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        raise RuntimeError("gateway did not start")

    async def stop(self) -> None:
        """Stop like ``serve`` does (in-flight requests get a grace period), but never hang the
        session: past a bound, say what was still open and force the server down."""
        self._server.should_exit = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=STOP_GRACE_SECONDS + 20)
        except TimeoutError:
            state = self._server.server_state
            log.warning(
                "test gateway %s (namespace %s) did not stop: %d connection(s), %d task(s) still open;"
                " forcing it down",
                self.base_url,
                self.settings.redis_namespace,
                len(state.connections),
                len(state.tasks),
            )
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=10)

    # HTTP helpers ---------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base_url + path

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        async with self.http.request(
            method, self.url(path), json=json, data=data, headers=all_headers
        ) as response:
            body: Any
            raw = await response.read()
            try:
                body = await response.json(content_type=None) if raw else None
            except ValueError:
                body = raw
            return response.status, body, dict(response.headers)

    async def admin(self, method: str, path: str, json: Any = None) -> Any:
        status, body, _ = await self.request(
            method,
            "/admin" + path,
            json=json,
            headers={"Authorization": f"Bearer {self.settings.admin_token}"},
        )
        assert status in (200, 201), (status, body)
        return body

    async def new_account(
        self, *, dialect: str = "fitinview", credits: int = 1000, plan: str = "paid"
    ) -> int:
        body = await self.admin(
            "POST", "/accounts", {"name": "Test", "dialect": dialect, "credits": credits, "plan": plan}
        )
        return int(body["id"])

    async def new_key(self, account_id: int, mode: str = "live", name: str = "Production") -> dict[str, Any]:
        body: dict[str, Any] = await self.admin(
            "POST", f"/accounts/{account_id}/keys", {"mode": mode, "name": name}
        )
        return body

    async def account_with_key(
        self, *, credits: int = 1000, mode: str = "live", dialect: str = "fitinview"
    ) -> tuple[int, str]:
        account_id = await self.new_account(dialect=dialect, credits=credits)
        key = await self.new_key(account_id, mode)
        return account_id, str(key["key"])

    async def wait_for_status(
        self, job_id: str, key: str, statuses: set[str], timeout: float = 30
    ) -> dict[str, Any]:
        """Poll a FitInView job until its status is one of ``statuses`` (tests only)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status, body, _ = await self.request("GET", f"/api/v1/tryon/{job_id}", key=key)
            assert status == 200, body
            if body["status"] in statuses:
                return dict(body)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} stayed {body['status']}")
            await asyncio.sleep(0.05)


def base_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "admin_token": ADMIN_TOKEN,
        "engine": "local",
        "outbound_allow_http": True,
        "sync_wait_seconds": 30.0,
        "sweep_interval_seconds": 0.5,
        "worker_shutdown_seconds": 1.0,
        "job_retry_min_backoff_ms": 50,
        "job_retry_max_backoff_ms": 200,
        "rate_limit_per_min": 1000,
        "read_rate_limit_per_min": 100000,
        "redis_namespace": "tryon-test-" + secrets.token_hex(4),
    }
    values.update(overrides)
    return Settings(**values)
