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


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


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

            # Ops tools find the running deployment from its data directory: no URLs copied around.
            account_id = str(demo["fitinview"]["account_id"])
            grant = await asyncio.to_thread(
                cli,
                "admin",
                "--data-dir",
                str(data_dir),
                "--json",
                "credits",
                "grant",
                account_id,
                "5",
                "--reason",
                "welcome back",
                env=env,
            )
            assert grant.returncode == 0, grant.stderr
            assert json.loads(grant.stdout)["credits_remaining"] == 1000 - 8 + 5
            async with http.get(base + "/api/v1/account", headers=headers) as response:
                assert (await response.json())["credits_remaining"] == 1000 - 8 + 5
            verify = await asyncio.to_thread(cli, "ledger", "verify", "--data-dir", str(data_dir), env=env)
            assert verify.returncode == 0 and "0 violation(s)" in verify.stdout, verify.stdout + verify.stderr

            # A server that dies is started again by dev itself, on its own port: the API recovers.
            killed = json.loads((data_dir / "services.json").read_text())
            for name in ("postgres_pid", "redis_pid", "s3_pid"):
                os.kill(killed[name], signal.SIGKILL)
            answer = await _tryon_once_recovered(http, base, headers, body)
            assert answer["status"] == "succeeded", answer
            restarted = json.loads((data_dir / "services.json").read_text())
            for name in ("postgres_pid", "redis_pid", "s3_pid"):
                assert restarted[name] != killed[name] and alive(restarted[name]), (name, restarted)
            assert restarted["redis_port"] == killed["redis_port"]
            assert restarted["postgres_port"] == killed["postgres_port"]
            printed = (tmp_path / "dev.log").read_text()
            for server in ("postgres", "redis", "seaweedfs"):
                assert f"embedded {server} running again" in printed, printed[-3000:]
            async with http.get(base + "/api/v1/account", headers=headers) as response:
                assert (await response.json())["credits_remaining"] == 1000 - 8 + 5 - 8  # nothing lost
        running = json.loads((data_dir / "services.json").read_text())
        pids = [running[name] for name in ("postgres_pid", "redis_pid", "s3_pid")]
        assert all(isinstance(pid, int) and alive(pid) for pid in pids), running
    finally:
        dev.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(dev.wait, 90)
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()
    assert not [pid for pid in pids if alive(pid)], "embedded services outlived dev"

    # A stopped deployment: the command starts its services, answers, and stops them again.
    listed = await asyncio.to_thread(
        cli, "admin", "--data-dir", str(data_dir), "--json", "operators", "list", env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert [operator["name"] for operator in json.loads(listed.stdout)] == ["root"]
    after = json.loads((data_dir / "services.json").read_text())
    assert after["postgres_pid"] is None and after["s3_pid"] is None


async def _tryon_once_recovered(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], body: dict[str, object]
) -> dict[str, object]:
    """Submit until the gateway answers other than 503 (its servers are being restarted), within 90 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while True:
        try:
            async with http.post(base + "/api/v1/tryon", json=body, headers=headers) as response:
                answer: dict[str, object] = await response.json()
                if response.status != 503:
                    assert response.status == 200, (response.status, answer)
                    return answer
        except aiohttp.ClientError:
            pass
        assert loop.time() < deadline, "the API did not recover after its servers were killed"
        await asyncio.sleep(0.5)


async def test_ops_commands_say_in_one_line_what_they_could_not_reach(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYON_")}
    env["TRYON_DATABASE_URL"] = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/tryon"
    for args in (("ledger", "verify"), ("admin", "operators", "list")):
        result = await asyncio.to_thread(cli, *args, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach PostgreSQL" in lines[0] and "TRYON_DATABASE_URL" in lines[0]
        assert "secret" not in result.stderr and "Traceback" not in result.stderr
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    result = await asyncio.to_thread(cli, "ledger", "verify", "--data-dir", str(empty), env=env)
    assert result.returncode == 2 and "no dev deployment" in result.stderr, result.stderr
