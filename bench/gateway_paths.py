"""The gateway's hot paths over HTTP: polls and async submits, both dialects, test and live keys.

A poll reads one queued job (``GET /api/v1/tryon/{id}``, ``GET /api/v1/orders/{id}``) with the key
that made it: authentication, the read limit, one job read, presigned input links, the dialect's
JSON. An async submit (``wait: false``; FtmvAI is always async) carries a 256 px person and garment
in base64: authentication, the submit limit (FtmvAI: its plan windows and in-progress count),
decoding and checking both images, storing them in S3, the job row and (live keys) the debit in one
transaction, the enqueue. Submits rotate over the run's accounts; no worker runs meanwhile, and
each submit phase's queued jobs are failed before the next (FtmvAI's in-progress limit).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from bench import loadgen
from bench.ceilings import Shape
from bench.loadgen import LoadRequest, LoadResult
from bench.world import World, settle_unfinished

SUBMIT_PATHS = {"fitinview": "/api/v1/tryon", "ftmvai": "/api/v1/generate"}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def http_json(method: str, url: str, key: str, body: str | None = None) -> dict[str, Any]:
    data = body.encode() if body is not None else None
    headers = {**_auth(key), "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def seed_jobs(base: str, world: World, bodies: dict[str, str]) -> dict[str, str]:
    """One queued test job per dialect, made by each dialect's first customer: its poll path."""
    fitinview = http_json(
        "POST", base + SUBMIT_PATHS["fitinview"], world.fitinview[0].test_key, bodies["fitinview"]
    )
    ftmvai = http_json("POST", base + SUBMIT_PATHS["ftmvai"], world.ftmvai[0].test_key, bodies["ftmvai"])
    return {
        "fitinview": f"/api/v1/tryon/{fitinview['job_id']}",
        "ftmvai": f"/api/v1/orders/{ftmvai['order_id']}",
    }


def measure_poll(base: str, world: World, shape: Shape, polls: dict[str, str]) -> dict[str, LoadResult]:
    results: dict[str, LoadResult] = {}
    for dialect, path in polls.items():
        key = getattr(world, dialect)[0].test_key
        request = LoadRequest(method="GET", path=path, headers=_auth(key))
        results[dialect] = loadgen.run(shape.spec(base, [request]))
    return results


def measure_submit(
    base: str, world: World, shape: Shape, bodies: dict[str, str], database_url: str
) -> dict[str, LoadResult]:
    """``{dialect}_{mode}`` → the rate of accepted async submits."""
    results: dict[str, LoadResult] = {}
    for dialect in ("fitinview", "ftmvai"):
        for mode in ("test", "live"):
            requests = [
                LoadRequest(
                    method="POST",
                    path=SUBMIT_PATHS[dialect],
                    headers=_auth(customer.test_key if mode == "test" else customer.live_key),
                    body=bodies[dialect],
                )
                for customer in getattr(world, dialect)
            ]
            results[f"{dialect}_{mode}"] = loadgen.run(shape.spec(base, requests))
            asyncio.run(settle_unfinished(database_url))
    return results
