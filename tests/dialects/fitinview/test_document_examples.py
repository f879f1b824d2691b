"""The examples in fitinview-api.txt work unchanged against the gateway, apart from the base URL,
the key and the image URLs (whose hosts don't exist here)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.support.contracts import contract_text
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost


def python_example() -> str:
    text = contract_text("fitinview-api.txt")
    start = text.index("Example (Python)") + len("Example (Python)")
    end = text.index("Response — sync success")
    return text[start:end].strip()


async def test_the_python_example_runs_against_the_gateway(
    gateway: RunningGateway, image_host: ImageHost
) -> None:
    _, key = await gateway.account_with_key(credits=100)
    script = (
        python_example()
        .replace("https://api.fitinview.com", gateway.base_url)
        .replace("fiv_live_…", key)
        .replace("https://example.com/me.jpg", image_host.url("/person.png"))
        .replace("https://example.com/shirt.jpg", image_host.url("/shirt.png"))
    )
    assert "httpx.post(" in script and gateway.base_url in script and key in script
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    result_url = result.stdout.strip()
    assert result_url.startswith("http")
    async with gateway.http.get(result_url) as response:
        assert response.status == 200
        assert (await response.read()).startswith(b"\x89PNG")


async def test_the_curl_example_body_is_accepted(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key(credits=100)
    status, answer, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json={
            "person_url": image_host.url("/person.png"),
            "garment_urls": [image_host.url("/shirt.png")],
            "wait": True,
            "output_size": "1K",
        },
    )
    assert status == 200
    assert {"job_id", "status", "result_url", "cost_credits", "credits_remaining"} <= set(answer)
