"""The ``tryon`` CLI as a user runs it (``python -m tryon_client``, a subprocess) against a real
gateway: every command, ``--json``, and the exit codes that say what failed."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image
from tryon_client import webhooks
from tryon_client.cli import (
    EXIT_AUTH,
    EXIT_BAD_INPUT,
    EXIT_BAD_SIGNATURE,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,
    EXIT_PAYMENT_REQUIRED,
    EXIT_RATE_LIMITED,
    EXIT_UNAVAILABLE,
)

from tests.clients.conftest import CUP, PERSON, REPO, SHIRT, TROUSERS, run_cli, sdk_env, submit_and_fail
from tests.support.gateway import RunningGateway, fixture_b64


def longest_side(path: Path) -> int:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return max(image.size)


async def test_tryon_saves_the_result_and_account_shows_the_balance(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    _, key = await gateway.account_with_key(credits=30, mode="test")
    out = tmp_path / "out.png"
    result = await run_cli(
        "tryon",
        str(PERSON),
        str(SHIRT),
        str(TROUSERS),
        "--size",
        "2K",
        "-o",
        str(out),
        key=key,
        base_url=gateway.base_url,
    )
    assert result.code == 0, result
    assert "succeeded (0 credits)" in result.stdout and f"saved: {out}" in result.stdout
    assert longest_side(out) == 2048
    account = await run_cli("--api-key", key, "--base-url", gateway.base_url, "account")
    assert account.code == 0 and "credits: 30" in account.stdout and "calls: 1" in account.stdout, account


async def test_tryon_json_with_a_test_key(gateway: RunningGateway, tmp_path: Path) -> None:
    _, key = await gateway.account_with_key(credits=0, mode="test")
    result = await run_cli(
        "tryon",
        str(PERSON),
        str(SHIRT),
        "--json",
        "--seed",
        "5",
        "--metadata",
        "order=7",
        "-o",
        str(tmp_path),
        key=key,
        base_url=gateway.base_url,
    )
    assert result.code == 0, result
    job = json.loads(result.stdout)
    assert (job["status"], job["cost_credits"], job["seed"], job["metadata"]) == (
        "succeeded",
        0,
        5,
        {"order": "7"},
    )
    assert job["saved"] == [str(tmp_path / f"{job['job_id']}.png")]
    assert longest_side(Path(job["saved"][0])) == 1024
    assert result.stderr == "", "no progress display when not on a terminal"


async def test_ftmvai_tryon_and_catalog(gateway: RunningGateway, tmp_path: Path) -> None:
    _, key = await gateway.account_with_key(credits=0, mode="test", dialect="ftmvai")
    single = await run_cli(
        "tryon",
        str(PERSON),
        str(SHIRT),
        "--size",
        "1K",
        "-o",
        str(tmp_path / "me.jpg"),
        key=key,
        base_url=gateway.base_url,
    )
    assert single.code == 0, single
    assert "completed (0 credits)" in single.stdout and (tmp_path / "me.jpg").is_file()
    shots = tmp_path / "shots"
    catalog = await run_cli(
        "catalog",
        str(CUP),
        "--count",
        "12",
        "--quality",
        "standard",
        "-o",
        f"{shots}/",
        key=key,
        base_url=gateway.base_url,
    )
    assert catalog.code == 0, catalog
    assert len(list(shots.glob("*.jpg"))) == 12
    order_id = single.stdout.split()[1].rstrip(":")
    shown = await run_cli("job", order_id, "--json", key=key, base_url=gateway.base_url)
    assert shown.code == 0 and json.loads(shown.stdout)["status"] == "completed", shown
    two = await run_cli("tryon", str(PERSON), str(SHIRT), str(TROUSERS), key=key, base_url=gateway.base_url)
    assert two.code == EXIT_BAD_INPUT and "exactly one" in two.stderr, two
    listing = await run_cli("jobs", key=key, base_url=gateway.base_url)
    assert listing.code == EXIT_BAD_INPUT and "FtmvAI has no job list" in listing.stderr, listing


async def test_jobs_job_and_failed_job_exit_code(slow_gateway: RunningGateway) -> None:
    _, key = await slow_gateway.account_with_key(credits=100)
    body = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    failed_id = await submit_and_fail(slow_gateway, key, body, "/api/v1/tryon")
    status, other, _ = await slow_gateway.request(
        "POST", "/api/v1/tryon", key=key, json=body | {"wait": True}
    )
    assert status == 200 and other["status"] == "succeeded", other

    everything = await run_cli("jobs", key=key, base_url=slow_gateway.base_url)
    assert everything.code == 0, everything
    assert [line.split()[0] for line in everything.stdout.splitlines()] == [other["job_id"], failed_id]
    failed_only = await run_cli(
        "jobs", "--status", "failed", "--json", key=key, base_url=slow_gateway.base_url
    )
    assert [job["job_id"] for job in json.loads(failed_only.stdout)["jobs"]] == [failed_id], failed_only

    shown = await run_cli("job", failed_id, key=key, base_url=slow_gateway.base_url)
    assert shown.code == EXIT_JOB_FAILED, shown
    assert "error: generation_failed: content_blocked" in shown.stdout
    succeeded = await run_cli("job", other["job_id"], "--wait", key=key, base_url=slow_gateway.base_url)
    assert succeeded.code == 0 and "result: http" in succeeded.stdout, succeeded
    missing = await run_cli("job", "job_missing", key=key, base_url=slow_gateway.base_url)
    assert missing.code == EXIT_NOT_FOUND, missing


async def test_exit_codes_say_what_failed(
    gateway: RunningGateway, gateway_factory: Any, tmp_path: Path
) -> None:
    _, broke = await gateway.account_with_key(credits=0)
    paid = await run_cli("tryon", str(PERSON), str(SHIRT), key=broke, base_url=gateway.base_url)
    assert paid.code == EXIT_PAYMENT_REQUIRED and "Insufficient credits" in paid.stderr, paid
    as_json = await run_cli("tryon", str(PERSON), str(SHIRT), "--json", key=broke, base_url=gateway.base_url)
    error = json.loads(as_json.stderr)
    assert (error["exit_code"], error["error"]["status"], error["error"]["type"]) == (
        4,
        402,
        "PaymentRequiredError",
    )

    missing_file = await run_cli(
        "tryon", str(tmp_path / "nope.jpg"), str(SHIRT), key=broke, base_url=gateway.base_url
    )
    assert missing_file.code == EXIT_BAD_INPUT and "cannot read" in missing_file.stderr, missing_file
    no_key = await run_cli("account", base_url=gateway.base_url)
    assert no_key.code == EXIT_BAD_INPUT and "TRYON_API_KEY" in no_key.stderr, no_key
    unknown = await run_cli("account", key="fiv_live_" + "1" * 40, base_url=gateway.base_url)
    assert unknown.code == EXIT_AUTH, unknown
    unreachable = await run_cli("account", "--max-retries", "0", key=broke, base_url="http://127.0.0.1:9")
    assert unreachable.code == EXIT_UNAVAILABLE, unreachable

    limited: RunningGateway = await gateway_factory(rate_limit_per_min=1)
    _, key = await limited.account_with_key(mode="test")
    body = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }
    for _ in range(3):  # a minute window may turn over between the two submits; then try again
        await limited.request("POST", "/api/v1/tryon", key=key, json=body)
        rate = await run_cli(
            "tryon",
            str(PERSON),
            str(SHIRT),
            "--no-wait",
            "--max-rate-limit-wait",
            "0",
            key=key,
            base_url=limited.base_url,
        )
        if rate.code != 0:
            break
    assert rate.code == EXIT_RATE_LIMITED and "Rate limit exceeded" in rate.stderr, rate


async def test_webhook_verify(tmp_path: Path) -> None:
    body = b'{"event":"tryon.completed","job_id":"job_1","status":"succeeded","result_url":null}'
    secret = "whsec_cli"
    headers = webhooks.sign(body, secret)
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    ok = await run_cli(
        "webhook",
        "verify",
        "--secret",
        secret,
        "--body",
        str(tmp_path / "body.json"),
        "--headers-file",
        str(tmp_path / "headers.json"),
    )
    assert ok.code == 0 and "valid: tryon.completed job_1 succeeded" in ok.stdout, ok
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    piped = await run_cli("webhook", "verify", "--secret", secret, "--json", *header_args, stdin=body)
    assert piped.code == 0 and json.loads(piped.stdout)["event"]["job_id"] == "job_1", piped
    tampered = await run_cli(
        "webhook", "verify", "--secret", secret, *header_args, stdin=body.replace(b"job_1", b"job_2")
    )
    assert tampered.code == EXIT_BAD_SIGNATURE and "does not match" in tampered.stderr, tampered


async def test_help_documents_the_exit_codes() -> None:
    result = await run_cli("--help")
    assert result.code == 0
    for text in ("payment required", "rate limited", "job or order failed", "bad input"):
        assert text in result.stdout


async def test_the_python_example_in_docs_runs_as_written(gateway: RunningGateway, tmp_path: Path) -> None:
    docs = (REPO / "docs" / "clients.md").read_text()
    example = docs.split("```python\n", 1)[1].split("```", 1)[0]
    assert "Client()" in example
    for name, fixture in (("me.jpg", PERSON), ("shirt.png", SHIRT), ("trousers.png", TROUSERS)):
        (tmp_path / name).write_bytes(fixture.read_bytes())
    _, key = await gateway.account_with_key(credits=7, mode="test")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        example,
        cwd=tmp_path,
        env=sdk_env(TRYON_API_KEY=key, TRYON_BASE_URL=gateway.base_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "7 credits left"
    assert longest_side(tmp_path / "out.png") == 2048
