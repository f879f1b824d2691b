"""Concurrent polls share their event-loop turn's reads (engine.coalesce, issue 10), and each still
gets its own answer: its own job, a 404 for another account's, its own rate-limit headers.

A lone poll's statements are counted in ``test_poll_reads.py``; here many polls arrive at once,
from several accounts of both dialects, mixing their own jobs with other accounts' and unknown ids.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.dialects.ftmvai.test_orders import tryon_body
from tests.support.gateway import RunningGateway, fitinview_tryon_body

ROUNDS = 6


async def test_concurrent_polls_each_get_their_own_answer(gateway: RunningGateway) -> None:
    fitinview: list[tuple[str, str]] = []  # (key, job id)
    for _ in range(3):
        _, key = await gateway.account_with_key(mode="test")
        status, job, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=fitinview_tryon_body())
        assert status in (200, 202), job
        fitinview.append((key, job["job_id"]))
    ftmvai: list[tuple[str, int]] = []
    for _ in range(3):
        _, key = await gateway.account_with_key(dialect="ftmvai", mode="test")
        status, created, _ = await gateway.request("POST", "/api/v1/generate", key=key, json=tryon_body())
        assert status in (200, 201, 202), created
        ftmvai.append((key, created["order_id"]))

    calls: list[tuple[str, str, Any]] = []  # (path, key, expected id or None for a 404)
    for index, (key, job_id) in enumerate(fitinview):
        calls.append((f"/api/v1/tryon/{job_id}", key, job_id))
        other = fitinview[(index + 1) % len(fitinview)][1]
        calls.append((f"/api/v1/tryon/{other}", key, None))
        calls.append(("/api/v1/tryon/job_000000000000000000000000", key, None))
    for index, (key, order_id) in enumerate(ftmvai):
        calls.append((f"/api/v1/orders/{order_id}", key, order_id))
        other_order = ftmvai[(index + 1) % len(ftmvai)][1]
        calls.append((f"/api/v1/orders/{other_order}", key, None))
        calls.append(("/api/v1/orders/999999999", key, None))
    calls *= ROUNDS

    answers = await asyncio.gather(*(gateway.request("GET", path, key=key) for path, key, _ in calls))
    for (path, _, expected), (status, body, headers) in zip(calls, answers, strict=True):
        if expected is None:
            assert status == 404, (path, status, body)
        elif path.startswith("/api/v1/tryon/"):
            assert status == 200 and body["job_id"] == expected, (path, status, body)
        else:
            assert status == 200 and body["order"]["id"] == expected, (path, status, body)
        if path.startswith("/api/v1/orders/"):
            assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= {
                name.lower() for name in headers
            }
        names = {name.lower(): value for name, value in headers.items()}
        assert names.get("x-request-id", "").startswith("req_"), headers
