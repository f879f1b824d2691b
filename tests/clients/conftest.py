"""Fixtures for the client tests: the SDK imported from the repository, gateways with the
settings the client scenarios need, and helpers to run the CLI and fail a job.

The SDK is its own distribution (clients/python); the tests import it from the source tree
rather than from an install, so ``pip install -e ".[test]" && python -m pytest`` tests the
working copy. Subprocesses (the CLI, the MCP server) get the same path via PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.execution import fail_job
from tests.support.gateway import RunningGateway

REPO = Path(__file__).resolve().parents[2]
SDK_SRC = REPO / "clients" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))

FIXTURES = REPO / "tests" / "fixtures"
PERSON = FIXTURES / "person-astronaut.png"
SHIRT = FIXTURES / "garment-shirt-red-stripes.png"
TROUSERS = FIXTURES / "garment-trousers-blue.png"
CUP = FIXTURES / "product-coffee-cup.png"


def sdk_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI or MCP subprocess: the SDK on PYTHONPATH, no stray key."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRYON_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SDK_SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"


async def run_cli(
    *args: str,
    key: str | None = None,
    base_url: str | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> CliResult:
    """Run ``python -m tryon_client ARGS`` without blocking the loop the gateway runs on."""
    extra = {}
    if key is not None:
        extra["TRYON_API_KEY"] = key
    if base_url is not None:
        extra["TRYON_BASE_URL"] = base_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryon_client",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=sdk_env(**extra),
        cwd=cwd,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin or b""), timeout=120)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


async def submit_and_fail(gateway: RunningGateway, key: str, body: dict[str, Any], path: str) -> str:
    """Submit a job (no wait) on a slow gateway and fail it the way ops would; return its public id."""
    status, answer, _ = await gateway.request("POST", path, key=key, json=body)
    assert status in (200, 202), answer
    public_id = str(answer.get("job_id") or answer.get("order_id"))
    await fail_public_id(gateway, public_id)
    return public_id


async def fail_public_id(gateway: RunningGateway, public_id: str) -> None:
    if public_id.isdigit():
        internal = int(public_id)
    else:
        job = await gateway.runtime.jobs.by_public_id(public_id)
        assert job is not None
        internal = job.id
    failed = await fail_job(gateway.runtime, internal, code="generation_failed", message="content_blocked")
    assert failed is not None, "the job finished before the test could fail it: is the gateway slow enough?"


@pytest.fixture(scope="session")
async def slow_gateway(gateway_factory: Any) -> RunningGateway:
    """A gateway whose local backend takes 1.5 s, so a test can fail a job before it finishes and
    see progress while it runs; FtmvAI's in-progress 429 asks to come back after 1 s."""
    gateway: RunningGateway = await gateway_factory(
        local_backend_delay_seconds=1.5, concurrency_retry_after_seconds=1
    )
    return gateway_factory.keep(gateway)  # shared by the modules of tests/clients
