"""A stalled S3 no longer hangs submits: every storage call is bounded by ``TRYON_S3_TIMEOUT_SECONDS``.

Before (issue 11), with SeaweedFS stopped by SIGSTOP for 70 s, submits hung 70 s and then
answered 200: minio's default client waits five minutes per read and retries five times.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from gateway.embedded import start_seaweed_s3
from tests.support.gateway import RunningGateway, fixture_b64

TIMEOUT = 2.0


def submit_body() -> dict[str, Any]:
    return {
        "person_image_b64": fixture_b64("person-astronaut.png"),
        "garment_images_b64": [fixture_b64("garment-shirt-red-stripes.png")],
        "wait": False,
    }


async def test_a_stalled_s3_makes_a_submit_503_and_then_recovers(
    gateway_factory: Any, tmp_path: Path
) -> None:
    weed = start_seaweed_s3(
        tmp_path, access_key="stalled", secret_key="stalled-secret", log_path=tmp_path / "log"
    )
    stopped = False
    try:
        gateway: RunningGateway = await gateway_factory(
            s3_endpoint=weed.endpoint,
            s3_access_key="stalled",
            s3_secret_key="stalled-secret",
            s3_timeout_seconds=TIMEOUT,
        )
        account_id, key = await gateway.account_with_key(credits=100)
        loop = asyncio.get_running_loop()

        os.kill(weed.pid, signal.SIGSTOP)
        stopped = True
        started = loop.time()
        # The old client would wait minutes; the bound here is generous, the point is that it ends.
        status, body, headers = await asyncio.wait_for(
            gateway.request("POST", "/api/v1/tryon", key=key, json=submit_body()), timeout=TIMEOUT * 4 + 20
        )
        print(f"submit against a stalled S3 answered {status} in {loop.time() - started:.1f} s")
        assert status == 503, body
        assert int(headers["Retry-After"]) >= 1
        assert set(body) == {"detail"}
        detail = await gateway.admin("GET", f"/accounts/{account_id}")
        assert detail["credits_remaining"] == 100 == detail["ledger_sum"]  # nothing charged

        os.kill(weed.pid, signal.SIGCONT)
        stopped = False
        for _ in range(20):  # the store answers again: the gateway recovers by itself
            status, body, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=submit_body())
            if status != 503:
                break
            await asyncio.sleep(0.5)
        assert status == 200, body
        done = await gateway.wait_for_status(body["job_id"], key, {"succeeded", "failed"}, timeout=120)
        assert done["status"] == "succeeded", done
    finally:
        if stopped:
            os.kill(weed.pid, signal.SIGCONT)
        weed.stop(timeout=0)
