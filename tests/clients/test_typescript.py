"""The TypeScript SDK (clients/typescript) against real gateways, through Node's own test runner.

This test builds the package (``npm ci`` when node_modules is not current, ``npm run build``
when a source changed), starts two gateways — a default one whose outbound guard lets
webhooks reach the Node test's receiver, and one with tight limits for the 429s — mints the
accounts and keys, and runs ``node --test`` on the built package with all of it in
``TRYON_TS_FIXTURE``. Node's TAP summary must report every test passed and none skipped.
Afterwards the ledger is checked from here too: the connection cut once was charged once.
The example in docs/clients.md's TypeScript section runs as written, against the shared gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.gateway import FIXTURES, RunningGateway, free_port
from tests.support.image_host import ImageHost

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
STAMP = PACKAGE / "node_modules" / ".tryon-lock-sha256"
GATEWAY_TESTS = 16
OFFLINE_TESTS = 7
"""Tests in gateway.test.mjs and unit.test.mjs: all of them must have run and passed."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is needed for the TypeScript SDK tests (install Node.js 18+ with npm)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


async def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = PACKAGE
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{' '.join(args)} took longer than {timeout} s") from None
    return int(process.returncode or 0), output.decode(errors="replace")


def _newest_source() -> float:
    files = [PACKAGE / "package.json", PACKAGE / "tsconfig.json", *(PACKAGE / "src").rglob("*.ts")]
    return max(path.stat().st_mtime for path in files)


@pytest.fixture(scope="module")
async def built_package() -> str:
    """Install (only when the lockfile changed) and build (only when a source is newer)."""
    node = _tool("node")
    npm = _tool("npm")
    lock_hash = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != lock_hash:
        code, output = await _run(npm, "ci", "--no-audit", "--no-fund")
        assert code == 0, "npm ci failed:\n" + output
        STAMP.write_text(lock_hash)
    index = PACKAGE / "dist" / "index.js"
    if not index.exists() or index.stat().st_mtime < _newest_source():
        code, output = await _run(npm, "run", "build")
        assert code == 0, "npm run build failed:\n" + output
    return node


def _flat_png(path: Path, colour: tuple[int, int, int]) -> str:
    """A flat image: valid input, but a try-on of it fails (no person found, or a flat result)."""
    Image.new("RGB", (640, 640), colour).save(path, "PNG")
    return str(path)


async def _key(gateway: RunningGateway, **account: Any) -> tuple[int, dict[str, Any]]:
    mode = account.pop("mode", "live")
    account_id = await gateway.new_account(**account)
    return account_id, await gateway.new_key(account_id, mode)


async def test_typescript_sdk_against_the_gateway(
    built_package: str, gateway_factory: Any, image_host: ImageHost, tmp_path: Path
) -> None:
    hook_port = free_port()
    main: RunningGateway = await gateway_factory(
        outbound_allow_hosts=(image_host.host_port, f"127.0.0.1:{hook_port}"),
        webhook_backoff_scale=0.05,
        webhook_timeout_seconds=2.0,
    )
    limited: RunningGateway = await gateway_factory(
        rate_limit_per_min=2, local_backend_delay_seconds=1.5, concurrency_retry_after_seconds=1
    )
    live_account, fiv_live = await _key(main, credits=1000)
    fiv_test = await main.new_key(live_account, "test")
    _, fiv_poor = await _key(main, credits=0)
    retry_account, fiv_retry = await _key(main, credits=100)
    _, fiv_fail = await _key(main, credits=100)
    limited_account, fiv_limited = await _key(limited, credits=1000)
    ftm_account, ftm_live = await _key(main, dialect="ftmvai", credits=1000)
    ftm_test = await main.new_key(ftm_account, "test")
    _, ftm_poor = await _key(main, dialect="ftmvai", credits=0)
    _, ftm_free = await _key(limited, dialect="ftmvai", credits=100, plan="free")
    fixture = {
        "baseUrl": main.base_url,
        "limitedBaseUrl": limited.base_url,
        "hookPort": hook_port,
        "tmpDir": str(tmp_path),
        "images": {
            "personUrl": image_host.url("/person.png"),
            "shirtUrl": image_host.url("/shirt.png"),
            "trousersUrl": image_host.url("/trousers.png"),
            "personPath": str(FIXTURES / "person-astronaut.png"),
            "shirtPath": str(FIXTURES / "garment-shirt-red-stripes.png"),
            "productPath": str(FIXTURES / "product-coffee-cup.png"),
            "flatPersonPath": _flat_png(tmp_path / "flat-person.png", (128, 128, 128)),
            "flatGarmentPath": _flat_png(tmp_path / "flat-garment.png", (130, 130, 130)),
        },
        "keys": {
            "fivLive": fiv_live["key"],
            "fivTest": fiv_test["key"],
            "fivTestSecret": fiv_test["webhook_secret"],
            "fivPoor": fiv_poor["key"],
            "fivRetry": fiv_retry["key"],
            "fivFail": fiv_fail["key"],
            "fivLimited": fiv_limited["key"],
            "ftmLive": ftm_live["key"],
            "ftmTest": ftm_test["key"],
            "ftmPoor": ftm_poor["key"],
            "ftmFree": ftm_free["key"],
        },
    }
    env = {**os.environ, "TRYON_TS_FIXTURE": json.dumps(fixture)}
    for name in ("TRYON_API_KEY", "TRYON_BASE_URL", "NODE_OPTIONS"):
        env.pop(name, None)
    code, output = await _run(
        built_package,
        "--test",
        "--test-reporter=tap",
        "test/unit.test.mjs",
        "test/gateway.test.mjs",
        env=env,
        timeout=420,
    )
    summary = {
        name: int(count)
        for name, count in re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", output, re.M)
    }
    assert code == 0 and summary.get("fail") == 0, output
    assert summary.get("skipped") == 0 and summary.get("cancelled") == 0, output
    assert summary.get("pass", 0) >= GATEWAY_TESTS + OFFLINE_TESTS, output

    # The ledger agrees with what the SDK saw: the request cut once cost one try-on, and the
    # 429s on the limited gateway cost nothing.
    retried = await main.admin("GET", f"/accounts/{retry_account}")
    assert retried["credits_remaining"] == 92 == retried["ledger_sum"]
    _, page, _ = await limited.request("GET", "/api/v1/tryon?limit=100", key=fiv_limited["key"])
    accepted = len(page["jobs"])
    limited_detail = await limited.admin("GET", f"/accounts/{limited_account}")
    assert accepted >= 2
    assert limited_detail["credits_remaining"] == 1000 - 8 * accepted == limited_detail["ledger_sum"]


def _docs_example() -> str:
    """The first ```js block of docs/clients.md's TypeScript section."""
    text = (PACKAGE.parents[1] / "docs" / "clients.md").read_text()
    section = text[text.index("\n## TypeScript") :]
    match = re.search(r"```js\n(.*?)```", section, re.S)
    assert match is not None, "docs/clients.md's TypeScript section has no ```js example"
    return match.group(1)


async def test_the_typescript_example_in_the_docs_runs(
    built_package: str, gateway: RunningGateway, tmp_path: Path
) -> None:
    _, key = await gateway.account_with_key(credits=100)
    (tmp_path / "example.mjs").write_text(_docs_example())
    (tmp_path / "node_modules" / "@tryon-gateway").mkdir(parents=True)
    (tmp_path / "node_modules" / "@tryon-gateway" / "client").symlink_to(PACKAGE, target_is_directory=True)
    shutil.copy(FIXTURES / "person-astronaut.png", tmp_path / "person.png")
    shutil.copy(FIXTURES / "garment-shirt-red-stripes.png", tmp_path / "shirt.png")
    env = {**os.environ, "TRYON_API_KEY": key, "TRYON_BASE_URL": gateway.base_url}
    code, output = await _run(built_package, "example.mjs", env=env, timeout=180, cwd=tmp_path)
    assert code == 0, output
    job_id, cost, balance = output.split()
    assert job_id.startswith("job_") and (cost, balance) == ("8", "92"), output
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG"), output
