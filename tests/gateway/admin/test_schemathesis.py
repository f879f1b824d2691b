"""Schemathesis against ``/admin/openapi.json`` on a running gateway: no input is a 5xx.

It runs as root on a gateway of its own (its writes — new accounts, operators, credit
adjustments, erasures of random ids — must not touch what other tests hold), with deterministic
generation (no random seed, no example database: the same cases every run) and a bounded number
of examples per operation, through the ``st`` command line in a subprocess (the gateway answers
on this process's event loop, so the test awaits it).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from tests.support.gateway import RunningGateway

EXAMPLES_PER_OPERATION = 6
"""For the fuzzing phase; the coverage phase sends every boundary and negative case the schema
implies (~1,500 requests, 20-35 s here with the machine quiet, 2-3 minutes under heavy load)."""
PHASES = os.environ.get("TRYON_TEST_SCHEMATHESIS_PHASES", "examples,coverage,fuzzing")
TIME_LIMIT_SECONDS = 600
"""A safety net against a hung run, not a measurement."""


def st_command() -> list[str]:
    installed = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert installed, "schemathesis is not installed (pip install -e '.[test]')"
    return [installed]


async def test_schemathesis_finds_no_server_error(gateway_factory: Any, tmp_path: Path) -> None:
    # Its own bucket: a fuzzed DELETE /admin/accounts/{id} erases that id's objects, and account
    # ids of the other test gateways (each with its own database) overlap with this one's.
    fuzzed: RunningGateway = await gateway_factory(s3_bucket="tryon-fuzz")
    command = [
        *st_command(),
        "run",
        fuzzed.url("/admin/openapi.json"),
        "--url",
        fuzzed.url(""),
        "--header",
        f"Authorization: Bearer {fuzzed.settings.admin_token}",
        "--checks",
        "not_a_server_error",
        "--phases",
        PHASES,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-shrink",
        "--no-color",
        "--warnings",
        "off",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=TIME_LIMIT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-20_000:]
    assert "No issues found" in text, text[-5_000:]
    counted = re.search(r"(\d+) generated, (\d+) passed", text)
    assert counted and counted[1] == counted[2] and int(counted[1]) >= 100, text[-5_000:]
