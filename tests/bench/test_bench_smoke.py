"""``python -m bench --quick`` runs end to end: services, the ceilings server, a real ``serve``, the
load generator as its own process, the table, the JSON document and the chart.

No figure is judged (speed is for the bench to print, not for a test to assert): only that every
measurement produced a rate from answered requests and every ratio has its target and verdict.
The Python load generator is forced, since CI machines need not have ``wrk``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
MODES = ("test", "live")


async def test_quick_bench_runs_end_to_end(s3: services.S3Endpoint, redis_url: str, tmp_path: Path) -> None:
    await services.check_postgres()
    out, chart = tmp_path / "bench.json", tmp_path / "rates.png"
    env = {
        **os.environ,
        "TRYON_TEST_S3_ENDPOINT": s3.endpoint,
        "TRYON_TEST_S3_ACCESS_KEY": s3.access_key,
        "TRYON_TEST_S3_SECRET_KEY": s3.secret_key,
        "TRYON_TEST_REDIS_URL": redis_url,
        "TRYON_BENCH_LOADGEN": "python",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--services",
        "machine",
        "--only",
        "ceilings,poll,submit",
        "--duration",
        "3",
        "--connections",
        "4",
        "--accounts",
        "100",  # FtmvAI admits 5 unfinished orders per account and no worker runs: room for every submit
        "--json",
        str(out),
        "--chart",
        str(chart),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text

    run = json.loads(out.read_text())
    assert run["errors"] == []
    assert run["machine"]["loadgen"] == "python"
    assert run["machine"]["commit"]
    rates = {(figure["section"], figure["name"]): figure["value"] for figure in run["figures"]}
    expected = [
        *(("ceilings", name) for name in ("bare_get", "decode_post", "pk_select", "debit_tx")),
        ("poll", "fitinview"),
        ("poll", "ftmvai"),
        *(("submit", f"{dialect}_{mode}") for dialect in ("fitinview", "ftmvai") for mode in MODES),
    ]
    for key in expected:
        assert key in rates, (key, text)
        if key[0] != "submit":
            assert rates[key] > 0, (key, text)
    # A submit phase's first answers can take longer than a quick run lasts (cold paths, a plan's
    # in-progress cap): each dialect must still have accepted submits in one of its modes.
    for dialect in ("fitinview", "ftmvai"):
        assert any(rates[("submit", f"{dialect}_{mode}")] > 0 for mode in MODES), (dialect, text)
    checks = {check["name"]: check for check in run["checks"]}
    for name in (
        "poll fitinview / bare PK select",
        "poll ftmvai / bare PK select",
        "async submit fitinview_test / bare debit tx",
        "async submit ftmvai_test / bare debit tx",
    ):
        assert checks[name]["target"].startswith(">=")
        assert checks[name]["passed"] == (checks[name]["value"] >= float(checks[name]["target"].split()[1]))
        assert name in text and ("PASS" in text or "FAIL" in text)
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
