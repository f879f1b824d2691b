"""``tryon-gateway dev``: the README's first command serves the API with embedded services,
prints its demo keys, and stops its children on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.gateway import fixture_b64, free_port


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of an exited parent is gone for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


async def test_dev_serves_with_embedded_services_and_stops_them(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYON_")}
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                assert dev.poll() is None, (tmp_path / "dev.log").read_text()
                try:
                    async with http.get(base + "/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("dev never became ready:\n" + (tmp_path / "dev.log").read_text())

            demo = json.loads((data_dir / "demo-accounts.json").read_text())
            printed = (tmp_path / "dev.log").read_text()
            assert demo["fitinview"]["live_key"] in printed and demo["fitinview"]["test_key"] in printed
            assert demo["ftmvai"]["live_key"] in printed

            headers = {"Authorization": f"Bearer {demo['fitinview']['live_key']}"}
            body = {
                "person_image_b64": fixture_b64("person-astronaut.png"),
                "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
            }
            async with http.post(base + "/api/v1/tryon", json=body, headers=headers) as response:
                answer = await response.json()
            assert response.status == 200, answer
            assert answer["status"] == "succeeded"
            async with http.get(answer["result_url"]) as response:
                assert response.status == 200
                assert (await response.read()).startswith(b"\x89PNG")
            async with http.get(base + "/api/v1/account", headers=headers) as response:
                account = await response.json()
            assert account["credits_remaining"] == 1000 - 8
        running = json.loads((data_dir / "services.json").read_text())
        pids = [running[name] for name in ("postgres_pid", "redis_pid", "s3_pid")]
        assert all(isinstance(pid, int) and alive(pid) for pid in pids), running
    finally:
        dev.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(dev.wait, 90)
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()
    assert not [pid for pid in pids if alive(pid)], "embedded services outlived dev"
