"""Schemathesis against both public OpenAPI documents: the documents promise what the API checks.

A running gateway (its own database and bucket) with a live key per dialect, enough credits, and
Stripe played by the local fake; ``st`` runs in a subprocess (the gateway answers on this
process's event loop) with deterministic generation. It fails on:

* any 5xx (``not_a_server_error``);
* a schema-valid request refused as invalid (``positive_data_acceptance``: "API rejected
  schema-compliant request", the validation is stricter than documented). 402 is accepted too:
  credits and declined payments are the account's state, not the request's shape;
* a schema-violating request accepted (``negative_data_rejection``).

Values a schema cannot make real (images, Stripe tokens, pack slugs, idempotency keys) are
swapped for real ones when valid (tests/dialects/openapi_fuzz_hooks.py).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.admin.test_schemathesis import st_command
from tests.support.fake_stripe import FakeStripe, serve_fake_stripe
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

EXAMPLES_PER_OPERATION = 8
PHASES = os.environ.get("TRYON_TEST_SCHEMATHESIS_PHASES")
"""Overrides each document's phases (e.g. ``coverage`` while iterating)."""
FITINVIEW_PHASES = "examples,coverage"
"""FitInView's request schema says which of several aliases is read with nested if/then/else, which
Schemathesis's fuzzing phase cannot generate from ("Schema Error"); the coverage phase still sends
every boundary and every negative case the schema implies, which is where a stricter-than-documented
rule or an accepted invalid value shows."""
TIME_LIMIT_SECONDS = 900
"""A safety net against a hung run, not a measurement."""
STRIPE_KEY = "sk_test_fuzz"
ROOT = Path(__file__).resolve().parents[2]
ACCEPTED = (
    "[checks.positive_data_acceptance]\n"
    'expected-statuses = ["2xx", "401", "402", "403", "404", "409", "429"]\n'
)
"""positive_data_acceptance's default statuses, with 402 and without 5xx (not_a_server_error's)."""


@pytest.fixture(scope="module")
async def stripe() -> AsyncIterator[FakeStripe]:
    async with serve_fake_stripe(STRIPE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
async def fuzzed(gateway_factory: Any, stripe: FakeStripe) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(
        s3_bucket="tryon-fuzz-public",
        stripe_api_key=STRIPE_KEY,
        stripe_base_url=stripe.base_url,
        rate_limit_per_min=100_000,
    )
    return gateway


async def _st(
    gateway: RunningGateway,
    document: str,
    key: str,
    image_host: ImageHost,
    cwd: Path,
    phases: str = "examples,coverage,fuzzing",
) -> str:
    command = [
        *st_command(),
        "run",
        gateway.url(document),
        "--url",
        gateway.url(""),
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error,positive_data_acceptance,negative_data_rejection",
        "--phases",
        PHASES or phases,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-shrink",
        "--no-color",
        "--warnings",
        "off",
    ]
    (cwd / "schemathesis.toml").write_text(ACCEPTED)
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.dialects.openapi_fuzz_hooks",
            "TRYON_FUZZ_IMAGE_HOST": image_host.base_url,
        },
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=TIME_LIMIT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    # the swapped-in images are long base64 runs: keep the report readable
    text = re.sub(r"[A-Za-z0-9+/=]{120,}", "<base64>", output.decode(errors="replace"))
    assert process.returncode == 0, text[-20_000:]
    assert "No issues found" in text, text[-5_000:]
    counted = re.search(r"(\d+) generated, (\d+) passed", text)
    assert counted and counted[1] == counted[2] and int(counted[1]) >= 50, text[-5_000:]
    return text


async def test_fitinview_document_holds(
    fuzzed: RunningGateway, image_host: ImageHost, tmp_path: Path
) -> None:
    _, key = await fuzzed.account_with_key(credits=10_000_000)
    await _st(fuzzed, "/openapi.json", key, image_host, tmp_path, FITINVIEW_PHASES)


async def test_ftmvai_document_holds(fuzzed: RunningGateway, image_host: ImageHost, tmp_path: Path) -> None:
    _, key = await fuzzed.account_with_key(credits=10_000_000, dialect="ftmvai")
    await _st(fuzzed, "/ftmvai/openapi.json", key, image_host, tmp_path)
