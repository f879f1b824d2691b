"""Stopping ``serve`` answers held sync waits instead of cutting them off (docs/deployment.md)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.gateway.test_processes import Processes, call, new_test_key, processes, wait_ready
from tests.support.gateway import fixture_b64, free_port

__all__ = ["processes"]  # the fixture, shared with test_processes


async def test_sigterm_answers_held_sync_waits_running(
    processes: Processes, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = processes.start("serve", "--port", str(port), TRYON_SYNC_WAIT_SECONDS="120")
    await wait_ready(http, base, serve)
    key = await new_test_key(http, base, "Drain")
    body = {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": True,
    }
    # No worker runs: the jobs stay queued, so each request is held by its sync wait.
    held = [asyncio.create_task(call(http, "POST", base + "/api/v1/tryon", key, body)) for _ in range(3)]
    for _ in range(200):
        _, page = await call(http, "GET", base + "/api/v1/tryon", key)
        if len(page["jobs"]) == 3:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the jobs were never accepted: {page}")
    await asyncio.sleep(0.5)  # every request is inside its wait now
    started = asyncio.get_running_loop().time()
    serve.send_signal(signal.SIGTERM)
    answers = await asyncio.wait_for(asyncio.gather(*held), timeout=30)
    elapsed = asyncio.get_running_loop().time() - started
    for status, answer in answers:
        assert status == 200, answer
        assert answer["status"] == "running" and answer["job_id"].startswith("job_"), answer
        assert "poll GET /api/v1/tryon/" in (answer["message"] or ""), answer
    assert elapsed < 10, f"the waits were held {elapsed:.1f} s after SIGTERM instead of answered"
    # uvicorn re-raises the signal once it has shut down, so the process ends by SIGTERM.
    assert await asyncio.to_thread(serve.wait, 30) in (0, -signal.SIGTERM)
